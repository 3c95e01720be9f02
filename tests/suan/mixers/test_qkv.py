"""The shared q/k/v frame of the biased mixers (one parameter layout for all) and each mixer's own options."""

from __future__ import annotations

from dataclasses import fields

import pytest

from suan.mixers.base import MixerConfig, MixerOptions
from suan.mixers.qkv import BiasedQKVMixer
from suan.mixers.registry import MIXERS, build_mixer
from suan.utils.config import ConfigError

FRAMED = sorted(name for name, spec in MIXERS.items() if issubclass(spec.cls, BiasedQKVMixer))


def _cfg(name: str, **kw) -> MixerConfig:
    return MixerConfig(name=name, d_model=16, num_heads=2, max_len=12, **kw)


def test_the_hierarchical_mixers_share_the_frame():
    assert {"combiner", "halonet", "span_search", "dhsa", "routing", "transnext"} <= set(FRAMED)


@pytest.mark.parametrize("name", [n for n in sorted(MIXERS) if fields(MIXERS[n].cls.options)])
def test_each_option_of_a_mixer_refuses_a_negative_count_naming_the_mixer_and_field(name):
    own = MIXERS[name].cls.options
    assert issubclass(own, MixerOptions) and set(own.counts) == {f.name for f in fields(own)}
    for f in fields(own):
        with pytest.raises(ConfigError, match=f"{name}: .*{f.name}"):
            own(**{f.name: -1})


@pytest.mark.parametrize("name", [n for n in sorted(MIXERS) if fields(MIXERS[n].cls.options)])
def test_a_mixer_takes_its_own_options_and_the_base_means_its_defaults(name):
    own = MIXERS[name].cls.options
    assert build_mixer(_cfg(name)).cfg.options == own()
    counts = {"local_window": 3, "dilation": 2, "num_blocks": 5}
    told = own.from_counts(**counts)
    assert {f.name: getattr(told, f.name) for f in fields(own)} == {f: counts[c] for f, c in own.counts.items()}
    assert build_mixer(_cfg(name, options=told)).cfg.options == told
    other = next(MIXERS[n].cls.options for n in sorted(MIXERS) if MIXERS[n].cls.options not in (own, MixerOptions))
    with pytest.raises(ConfigError, match=f"mixer '{name}' takes {own.__name__}"):
        build_mixer(_cfg(name, options=other()))


@pytest.mark.parametrize("name", FRAMED)
def test_biases_follow_the_config_and_have_the_shared_shapes(name):
    with_bias = dict(build_mixer(_cfg(name)).named_parameters())
    assert with_bias["pos_bias"].shape == (13,) and with_bias["time_bias"].ndim == 1
    assert with_bias["qkv.weight"].shape == (48, 16) and with_bias["out.weight"].shape == (16, 16)
    bare = dict(build_mixer(_cfg(name, pos_bias=False, time_bias=False)).named_parameters())
    assert "pos_bias" not in bare and "time_bias" not in bare
