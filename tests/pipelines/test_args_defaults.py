"""A model setting has one default: the CLI's argument groups may not drift from ModelConfig's."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.args import TRAIN_DEFAULTS, DistillArgs, SweepArgs, TrainArgs
from suan.config import ModelConfig

MODEL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize("cls", [TrainArgs, DistillArgs])
def test_model_settings_default_as_the_model_config_does(cls):
    shared = {f.name: f.default for f in dataclasses.fields(cls) if f.name in MODEL_DEFAULTS}
    assert {"local_window", "dilation"} <= set(shared)
    assert shared == {name: MODEL_DEFAULTS[name] for name in shared}


def test_sweeps_train_with_the_train_recipe():
    sweep = {f.name: f.default for f in dataclasses.fields(SweepArgs)}
    for name in ("max_epochs", "batch_size", "lr", "patience"):
        assert sweep[name] == TRAIN_DEFAULTS[name]
