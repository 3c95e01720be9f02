"""A model setting has one default: the CLI's argument groups may not drift from ModelConfig's."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.args import TRAIN_DEFAULTS, DemoArgs, DistillArgs, SweepArgs, TrainArgs
from suan.config import MIXER_COUNTS, ModelConfig
from suan.mixers.registry import MIXERS
from suan.recipe.config import OptimConfig

MODEL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize("cls", [TrainArgs, DistillArgs])
def test_model_settings_default_as_the_model_config_does(cls):
    shared = {f.name: f.default for f in dataclasses.fields(cls) if f.name in MODEL_DEFAULTS}
    assert shared == {name: MODEL_DEFAULTS[name] for name in shared}
    counts = {f.name: f.default for f in dataclasses.fields(cls) if f.name in MIXER_COUNTS}
    assert {"local_window", "dilation"} <= set(counts) and counts == {k: MIXER_COUNTS[k] for k in counts}


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_the_counts_defaults_give_every_mixer_its_own_option_defaults(name):
    own = MIXERS[name].cls.options
    assert own.from_counts(**MIXER_COUNTS) == own()


def test_the_recipe_settings_default_as_the_optim_config_does():
    assert TrainArgs(data="d", out="o").optim() == OptimConfig()


def test_the_demo_trains_at_the_train_batch():
    assert DemoArgs().batch_size == TRAIN_DEFAULTS["batch_size"]


def test_the_demo_sweep_trains_at_the_train_recipe_unless_told():
    demo = DemoArgs()
    assert (demo.sweep_lr, demo.sweep_schedule) == (TRAIN_DEFAULTS["lr"], TRAIN_DEFAULTS["schedule"])


def test_sweeps_train_with_the_train_recipe():
    sweep = {f.name: f.default for f in dataclasses.fields(SweepArgs)}
    for name in ("max_epochs", "batch_size", "lr", "patience"):
        assert sweep[name] == TRAIN_DEFAULTS[name]


def test_every_model_setting_of_train_reaches_the_model_config():
    from pipelines.train import PASSED_TO_MODEL

    # the settings train passes straight through, found from the two dataclasses rather than listed by hand
    assert {"wiring", "candidate_in_head", "pool_history", "position", "dropout", "backend"} <= set(PASSED_TO_MODEL)
    train_fields = {f.name for f in dataclasses.fields(TrainArgs)}
    resolved = {"grade", "seq_len", "mixer", "mixer_options"}  # computed from the grade table, data and registry
    assert set(PASSED_TO_MODEL) == (train_fields & set(MODEL_DEFAULTS)) - resolved
