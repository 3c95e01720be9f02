"""The one registry from config names to mixers. Adding a mixer = one ``register`` line here."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from suan.mixers.aaren import Aaren
from suan.mixers.base import Mixer, MixerConfig, RecurrentMixer
from suan.mixers.combiner import CombinerAttention
from suan.mixers.dhsa import DHSAttention
from suan.mixers.gated_deltanet import GatedDeltaNet
from suan.mixers.halonet import HaloAttention
from suan.mixers.hstu import HSTUAttention
from suan.mixers.linear_attn import LinearAttention
from suan.mixers.nats_hybrid import NAtSHybrid
from suan.mixers.routing import RoutingAttention
from suan.mixers.softmax_attn import SoftmaxAttention
from suan.mixers.span_search import SpanSearchAttention
from suan.mixers.sparse_attn import SparseAttention
from suan.mixers.titans import TitansMemory
from suan.mixers.transnext import AggregatedAttention
from suan.utils.config import ConfigError


@dataclass(frozen=True)
class MixerSpec:
    """A registered mixer.

    Args:
        cls: the mixer class, built as ``cls(cfg)``.
        defaults: config overrides this name implies (e.g. no biases for plain softmax).
        candidate_isolation: scoring C candidates at once equals scoring each alone.
        doc: one line for ``--help`` and docs.
        recurrent: the class implements :class:`~suan.mixers.base.RecurrentMixer` (incremental scoring).
        softmax: attention is a softmax over explicit scores, so position encodings, the deconstruction
            ablations and sink calibration apply.
        batch_coupled: a training forward moves buffers from the batch it sees (routing's centroid EMA), so
            encoding a batch in length chunks is not the same as one pass: the model does not chunk it.
        position: the position encoding this name implies ("" = relative): a model config takes it when no
            position is given.
        positions: the encodings this name can run (empty = any the config allows); a model config refuses
            another instead of letting the name override it silently.
    """

    cls: type[Mixer]
    defaults: MappingProxyType
    candidate_isolation: bool
    doc: str
    recurrent: bool = False
    softmax: bool = False
    batch_coupled: bool = False
    position: str = ""
    positions: tuple[str, ...] = ()

    @property
    def constant_state(self) -> bool:
        """Recurrent with a state whose size does not grow with the history (O(1) per appended behaviour)."""
        return self.recurrent and not self.cls.state_grows


def mixer_names(**attributes: bool) -> list[str]:
    """Registered names whose spec has every given attribute value, e.g. ``mixer_names(softmax=True)``."""
    return [name for name, spec in MIXERS.items() if all(getattr(spec, k) == v for k, v in attributes.items())]


MIXERS: dict[str, MixerSpec] = {}


def register(name: str, cls: type[Mixer], doc: str, candidate_isolation: bool = True, recurrent: bool = False,
             softmax: bool = False, batch_coupled: bool = False, position: str = "", positions: tuple[str, ...] = (),
             **defaults) -> None:
    if name in MIXERS:
        raise ValueError(f"mixer {name!r} is registered twice")
    missing = [m for m in ("state_grows", "init_state", "step", "score_candidates") if not hasattr(cls, m)]
    if recurrent and missing:
        raise TypeError(f"mixer {name!r} is registered as recurrent but {cls.__name__} lacks {missing} "
                        f"({RecurrentMixer.__name__})")
    if len(positions) == 1:  # a name that runs one encoding sets it for a hand-built MixerConfig too
        defaults = {**defaults, "position": positions[0]}
    MIXERS[name] = MixerSpec(cls, MappingProxyType(dict(defaults)), candidate_isolation, doc, recurrent, softmax,
                             batch_coupled, position, positions)


def build_mixer(cfg: MixerConfig) -> Mixer:
    """Instantiate the mixer named by ``cfg.name`` (its implied defaults applied; the base
    :class:`MixerOptions` stands for the mixer's own default options)."""
    if cfg.name not in MIXERS:
        raise ConfigError(f"unknown mixer {cfg.name!r}; registered: {sorted(MIXERS)}")
    spec = MIXERS[cfg.name]
    cfg = cfg.replace(options=spec.cls.options.own(cfg.options, f"mixer {cfg.name!r}"), **spec.defaults)
    return spec.cls(cfg)


register("softmax_rel", SoftmaxAttention, "softmax attention + relative position and time-bucket bias (SUAN)",
         softmax=True)
register("softmax", SoftmaxAttention, "plain softmax attention, no bias (BST)", softmax=True, position="none",
         positions=("none", "rope"), pos_bias=False, time_bias=False)
register("hstu", HSTUAttention, "HSTU pointwise SiLU attention + relative bias")
register("sparse", SparseAttention, "LightSUAN local window + dilated softmax attention with the relative bias",
         softmax=True)
register("halonet", HaloAttention, "HaloNet blocked local attention: a block + half-block halo")
register("aaren", Aaren, "Aaren: a learned query attends over each prefix (attention as an RNN)", recurrent=True)
register("linear_attn", LinearAttention, "causal linear attention, elu+1 feature map, normalised", recurrent=True)
register("gated_deltanet", GatedDeltaNet, "Gated DeltaNet: delta-rule state with a learned decay", recurrent=True)
register("nats_hybrid", NAtSHybrid, "NAtS-L hybrid: routed Gated DeltaNet state + softmax attention with bias",
         recurrent=True)
register("combiner", CombinerAttention, "Combiner: local block directly + mean-pooled earlier blocks, one softmax")
register("transnext", AggregatedAttention, "TransNeXt aggregated attention: window + pooled blocks + learned tokens")
register("routing", RoutingAttention, "Routing Transformer: online k-means clusters, causal attention within one",
         batch_coupled=True)
register("span_search", SpanSearchAttention, "superlinear span search: top-k span summaries + local span, O(L^1.5)")
register("dhsa", DHSAttention, "DHSA: session chunks scored by length-normalised sums, tokens of the top chunks")
register("titans", TitansMemory, "Titans: softmax attention + gated linear memory written by surprise gradients")
register("softmax_rope", SoftmaxAttention, "softmax attention + rotary q/k (RoPE) and the time-bucket bias",
         softmax=True, position="rope", positions=("rope",), pos_bias=False)
