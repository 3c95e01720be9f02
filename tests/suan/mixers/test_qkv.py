"""The shared q/k/v frame of the biased mixers: the block-size rule and one parameter layout for all."""

from __future__ import annotations

import pytest

from suan.mixers.base import MixerConfig
from suan.mixers.qkv import BiasedQKVMixer
from suan.mixers.registry import MIXERS, build_mixer

FRAMED = sorted(name for name, spec in MIXERS.items() if issubclass(spec.cls, BiasedQKVMixer))


def _cfg(name: str, **kw) -> MixerConfig:
    return MixerConfig(name=name, d_model=16, num_heads=2, max_len=12, **kw)


def test_the_hierarchical_mixers_share_the_frame():
    assert {"combiner", "halonet", "span_search", "dhsa", "routing", "transnext"} <= set(FRAMED)


@pytest.mark.parametrize("name", [n for n in FRAMED if MIXERS[n].cls.block_role])
def test_a_block_size_below_one_is_refused_with_its_meaning(name):
    with pytest.raises(ValueError, match=f"{name} needs local_window \\({MIXERS[name].cls.block_role}\\) >= 1"):
        build_mixer(_cfg(name, local_window=0))


@pytest.mark.parametrize("name", FRAMED)
def test_biases_follow_the_config_and_have_the_shared_shapes(name):
    with_bias = dict(build_mixer(_cfg(name)).named_parameters())
    assert with_bias["pos_bias"].shape == (13,) and with_bias["time_bias"].ndim == 1
    assert with_bias["qkv.weight"].shape == (48, 16) and with_bias["out.weight"].shape == (16, 16)
    bare = dict(build_mixer(_cfg(name, pos_bias=False, time_bias=False)).named_parameters())
    assert "pos_bias" not in bare and "time_bias" not in bare
