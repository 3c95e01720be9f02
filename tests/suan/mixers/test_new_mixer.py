"""Adding a mixer with a setting of its own is its file (with its options class) and one registry line: the
setting is then reachable from the command line, saved in the model config and loaded back, with no other edit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from features.schema import FeatureMap
from suan.config import ModelConfig
from suan.mixers.options import MixerOptions
from suan.mixers.registry import MIXERS, register
from suan.mixers.softmax_attn import SoftmaxAttention
from suan.models.ctr import build_model
from suan.utils.config import ConfigError, require


@dataclass(frozen=True, kw_only=True, slots=True)
class EchoOptions(MixerOptions):
    """A new setting: how many times the mixer's output is added to itself (a stand-in for a real knob)."""

    echoes: int = 1

    def validate(self) -> None:
        require(self.echoes >= 1, f"echo: echoes must be >= 1, got {self.echoes}")


class EchoAttention(SoftmaxAttention):
    """Softmax attention whose output is scaled by ``echoes`` (its own option)."""

    options: ClassVar[type[MixerOptions]] = EchoOptions

    def forward(self, x, **kw):
        return super().forward(x, **kw) * self.cfg.options.echoes


@pytest.fixture
def echo():
    register("echo", EchoAttention, "test-only mixer with an option of its own", softmax=True)  # the one line
    yield "echo"
    del MIXERS["echo"]


def test_a_new_mixers_own_option_reaches_the_model_from_the_command_line_and_round_trips(echo, tiny_synthetic,
                                                                                         tmp_path):
    from pipelines.args import TrainArgs, parse_variant
    from pipelines.train import model_config

    fmap = FeatureMap.load(tiny_synthetic / "data" / "feature_map.json")
    args = TrainArgs(data="unused", out="unused", grade=0, mixer=echo, mixer_options=("echoes=3",))
    cfg = model_config(args, fmap)
    assert cfg.mixer_options == EchoOptions(echoes=3)
    assert build_model(cfg, fmap).blocks[0].self_attn.cfg.options.echoes == 3
    cfg.save(tmp_path / "model_config.json")
    assert ModelConfig.load(tmp_path / "model_config.json") == cfg
    assert parse_variant(f"suan:mixer={echo}/mixer.echoes=2")[1]["mixer_options"] == ("echoes=2",)
    with pytest.raises(ConfigError, match="echoes must be >= 1"):
        TrainArgs(data="unused", out="unused", mixer=echo, mixer_options=("echoes=0",))
    with pytest.raises(ConfigError, match=r"among \['echoes'\]"):
        TrainArgs(data="unused", out="unused", mixer=echo, mixer_options=("echo=2",))
