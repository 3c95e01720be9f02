"""``suan tune``: a real Optuna study on RDB storage over real training runs; valid only, test read once."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from pipelines.args import TrainArgs, TuneArgs, fold_mixer_paths
from pipelines.train import run_train
from pipelines.tune import PruneOnValidAUC, load_space, run_tune
from suan.utils.config import ConfigError

SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "embedding_l2_scope": {"type": "categorical", "choices": ["table", "batch"]}}
BASE = {"max_epochs": 2, "batch_size": 256, "patience": 1}


def _write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(("space", "reason"), [
    ({"learning_rate": {"type": "float", "low": 1, "high": 2}}, "not a tunable suan train option"),
    ({"out": {"type": "categorical", "choices": ["a"]}}, "not a tunable"),
    ({"lr": {"type": "float", "low": 1e-2, "high": 1e-4}}, "low < high"),
    ({"lr": {"type": "gaussian"}}, "type one of"),
    ({"schedule": {"type": "categorical"}}, "needs choices"),
])
def test_bad_search_spaces_are_refused_with_the_reason(tmp_path, space, reason):
    with pytest.raises(ConfigError, match=reason):
        load_space(_write(tmp_path / "space.yaml", space))


def test_a_mixers_own_option_is_tunable_by_dotted_path_and_reaches_train_as_its_options(tmp_path):
    space = load_space(_write(tmp_path / "space.yaml", {"mixer.clusters": {"type": "int", "low": 2, "high": 8}}))
    values = fold_mixer_paths({"model": "suan", "mixer": "routing", **{name: 5 for name in space}})
    assert values == {"model": "suan", "mixer": "routing", "mixer_options": ("clusters=5",)}
    train = TrainArgs.from_dict({**values, "data": "unused", "out": "unused"})
    assert train.mixer_settings().clusters == 5
    with pytest.raises(ConfigError, match="among \\['clusters', 'capacity'\\]"):
        TrainArgs.from_dict({**fold_mixer_paths({"mixer": "routing", "mixer.clusterz": 5}), "data": "u", "out": "u"})


@pytest.mark.integration
def test_a_study_writes_a_recipe_train_accepts_and_resumes_from_its_storage(tiny_synthetic, tmp_path):
    data = str(tiny_synthetic / "data")
    args = TuneArgs(data=data, out=str(tmp_path / "tune"), space=_write(tmp_path / "space.yaml", SPACE),
                    base=_write(tmp_path / "base.yaml", BASE), model="dnn", grade=0, trials=3)
    outcome = run_tune(args)
    assert outcome["trials"]["COMPLETE"] == 3
    trials = sorted((tmp_path / "tune" / "trials").iterdir())
    assert len(trials) == 3
    for run in trials:  # every trial is a real run, scored on valid only
        metrics = json.loads((run / "metrics.json").read_text())
        assert "valid_auc" in metrics and not any(k.startswith("test_") for k in metrics)
    best = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert 0.5 < best["test"]["test_auc"] < 1 and best["valid_auc"] == pytest.approx(outcome["valid_auc"])
    recipe = yaml.safe_load((tmp_path / "tune" / "best_recipe.yaml").read_text())
    assert set(recipe) == {"model", "grade", *BASE, *SPACE}
    # the recipe is a `suan train --config` file
    train = TrainArgs.from_dict({**recipe, "data": data, "out": str(tmp_path / "final")})
    assert train.lr == recipe["lr"] and train.max_epochs == 2
    assert "test AUC" in (tmp_path / "tune" / "report.md").read_text()
    # the study lives in its storage: a second process continues it
    again = run_tune(args.replace(trials=1, seed=1))
    assert again["trials"]["COMPLETE"] == 4
    storage = f"sqlite:///{(tmp_path / 'tune' / 'optuna.db').resolve()}"
    assert len(optuna.load_study(study_name="suan", storage=storage).trials) == 4


@pytest.mark.integration
def test_a_trial_below_the_pruner_bar_stops_after_its_first_epoch(tiny_synthetic, tmp_path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.999))
    trial = study.ask()
    args = TrainArgs(data=str(tiny_synthetic / "data"), out=str(tmp_path / "run"), model="dnn", grade=0,
                     max_epochs=4, patience=4, progress=False, test=False,
                     mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(optuna.TrialPruned):
        run_train(args, callbacks=(PruneOnValidAUC(trial),))
    assert list(trial.storage.get_trial(trial._trial_id).intermediate_values) == [0]
    assert not (tmp_path / "run" / "metrics.json").exists()  # a pruned run does not look finished
