"""Configs: frozen, validated on creation, round-trip through JSON and YAML, unknown keys rejected."""

from __future__ import annotations

import dataclasses

import pytest

from features.protocols import P_AZ, ProtocolConfig
from features.schema import FeatureMap, FieldSpec
from features.sources.synthetic import SynthConfig
from pipelines.data_cmds import PrepareArgs
from suan.utils.config import ConfigError


@pytest.mark.parametrize("cfg", [
    SynthConfig(users=10, seed=3),
    P_AZ,
    PrepareArgs(source="events", input="x.csv", out="o", item_fields=("cate",), negatives=2),
    FeatureMap(dataset="d", protocol="p", max_seq_len=5, extra={"a": 1}, fields=(
        FieldSpec(name="item_id", role="target", vocab="item_id", vocab_size=9),
        FieldSpec(name="hist_ts", role="seq_time"), FieldSpec(name="target_ts", role="target_time"),
        FieldSpec(name="label", role="label"))),
], ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_round_trip(tmp_path, cfg, suffix):
    path = tmp_path / f"cfg{suffix}"
    cfg.save(path)
    back = type(cfg).load(path) if not isinstance(cfg, FeatureMap) else FeatureMap.load(path)
    assert back == cfg
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


def test_frozen_unknown_keys_and_types():
    cfg = SynthConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.users = 5  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown key"):
        SynthConfig.from_dict({"users": 5, "userz": 6})
    with pytest.raises(ConfigError, match="expected int"):
        SynthConfig.from_dict({"users": "many"})
    with pytest.raises(ConfigError, match="users must be >= 2"):
        SynthConfig(users=1)
    with pytest.raises(ConfigError, match="unknown role"):
        FieldSpec(name="x", role="sideways")
    with pytest.raises(ConfigError, match="exactly one label"):
        FeatureMap(dataset="d", protocol="p", max_seq_len=5, fields=(
            FieldSpec(name="item_id", role="target", vocab="item_id", vocab_size=9),
            FieldSpec(name="hist_ts", role="seq_time"), FieldSpec(name="target_ts", role="target_time")))
    with pytest.raises(ConfigError):
        ProtocolConfig(name="x", order="time", split="global_time", negatives=-1)
