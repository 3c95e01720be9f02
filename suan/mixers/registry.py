"""The one registry from config names to mixers. Adding a mixer = one ``register`` line here."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from suan.mixers.base import Mixer, MixerConfig
from suan.mixers.hstu import HSTUAttention
from suan.mixers.softmax_attn import SoftmaxAttention
from suan.mixers.sparse_attn import SparseAttention


@dataclass(frozen=True)
class MixerSpec:
    """A registered mixer.

    Args:
        cls: the mixer class, built as ``cls(cfg)``.
        defaults: config overrides this name implies (e.g. no biases for plain softmax).
        candidate_isolation: scoring C candidates at once equals scoring each alone.
        doc: one line for ``--help`` and docs.
    """

    cls: type[Mixer]
    defaults: MappingProxyType
    candidate_isolation: bool
    doc: str


MIXERS: dict[str, MixerSpec] = {}


def register(name: str, cls: type[Mixer], doc: str, candidate_isolation: bool = True, **defaults) -> None:
    if name in MIXERS:
        raise ValueError(f"mixer {name!r} is registered twice")
    MIXERS[name] = MixerSpec(cls, MappingProxyType(dict(defaults)), candidate_isolation, doc)


def build_mixer(cfg: MixerConfig) -> Mixer:
    """Instantiate the mixer named by ``cfg.name`` (its implied defaults applied)."""
    if cfg.name not in MIXERS:
        raise KeyError(f"unknown mixer {cfg.name!r}; registered: {sorted(MIXERS)}")
    spec = MIXERS[cfg.name]
    return spec.cls(cfg.replace(**spec.defaults) if spec.defaults else cfg)


register("softmax_rel", SoftmaxAttention, "softmax attention + relative position and time-bucket bias (SUAN)")
register("softmax", SoftmaxAttention, "plain softmax attention, no bias (BST)", pos_bias=False, time_bias=False)
register("hstu", HSTUAttention, "HSTU pointwise SiLU attention + relative bias")
register("sparse", SparseAttention, "LightSUAN local window + dilated softmax attention with the relative bias")
