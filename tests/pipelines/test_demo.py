"""The main job runs end to end on a small synthetic default."""

from __future__ import annotations

import pytest

from pipelines.args import DemoArgs
from pipelines.demo import run_demo
from suan.config import GRADES


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    result = run_demo(DemoArgs(out=str(tmp_path / "demo"), users=150, events_per_user=20, models=("suan", "dnn"),
                               grade=0, epochs=1, sweep_grades=(-3, -1, 0), sweep_fractions=(0.5, 1.0),
                               batch_size=128))  # ~15 steps an epoch on these ~2,000 rows (2 at the default 1024)
    out = capsys.readouterr().out
    assert "oracle" in out and "suan" in out and "dnn" in out and "popul." in out and "Hanley-McNeil" in out
    # the floor and the ceiling bracket the data: popularity ranking is informative and below the Bayes AUC
    oracle = result["data"]["splits"]["test"]["oracle_auc"]
    assert 0.5 < result["popularity"]["test"] < oracle
    assert set(result["models"]) == {"suan", "dnn"}
    for metrics in result["models"].values():
        assert 0.0 <= metrics["test_auc"] <= oracle
    # SUAN learns the planted interests even here (one epoch, 150 users): above the popularity floor
    # (a model that learned nothing scores ~0.5)
    assert result["models"]["suan"]["test_auc"] > result["popularity"]["test"]
    assert (tmp_path / "demo" / "mlflow" / "mlflow.db").exists()
    assert (tmp_path / "demo" / "runs" / "suan" / "model" / "model.pt").exists()
    # L-shaped: grades -3, -1, 0 on all the rows, grade 0 on half of them (the full-data grade-0 point is shared)
    assert (tmp_path / "demo" / "sweep" / "report.md").exists()
    assert sorted((p["grade"], p["fraction"]) for p in result["scaling"]["points"]) == [
        (-3, 1.0), (-1, 1.0), (0, 0.5), (0, 1.0)]
    assert {"test_auc", "test_teacher_auc"} <= set(result["distill"])
    # offline by default: the teacher is the comparison's SUAN run itself, not a model trained again
    assert result["distill"]["test_teacher_auc"] == pytest.approx(result["models"]["suan"]["test_auc"], abs=1e-9)
    assert (tmp_path / "demo" / "distill" / "model" / "model_config.json").read_text().count("lightsuan") == 1
    served = result["serving"]
    assert served["export"]["model_uri"] == "models:/suan-demo/1" and served["response"]["model_version"]
    scores = served["response"]["scores"]
    assert len(scores) == 5 and all(0.0 < s < 1.0 for s in scores)


def test_demo_args_name_what_each_distillation_mode_needs():
    with pytest.raises(ValueError, match="add suan to --models"):
        DemoArgs(models=("dnn", "din"))  # offline distils the comparison's SUAN run
    assert DemoArgs(models=("dnn", "din"), distill_mode="online").distill_mode == "online"
    assert DemoArgs(models=("dnn",), distill=False).models == ("dnn",)
    with pytest.raises(ValueError, match="one grade higher"):
        DemoArgs(grade=max(GRADES), distill_mode="online")
    with pytest.raises(ValueError, match="offline or online"):
        DemoArgs(distill_mode="sideways")


def test_demo_world_takes_the_item_count_and_taste_term():
    world = DemoArgs(items=250, taste_weight=3.0).synth_config()
    assert (world.items, world.taste_weight, world.users) == (250, 3.0, DemoArgs().users)
    with pytest.raises(ValueError):
        DemoArgs(items=0)  # the world's own check, before any stage runs
    with pytest.raises(ValueError, match="schedule must be one of"):
        DemoArgs(sweep_schedule="sideways")  # the sweep's recipe, checked before any stage runs
    with pytest.raises(ValueError, match="bad optimiser values"):
        DemoArgs(sweep_lr=0.0)


@pytest.mark.slow
def test_a_demo_sweep_of_another_recipe_trains_its_own_full_data_point(tmp_path):
    from pipelines.args import TrainArgs
    from scaling.manifest import load_manifest

    out = tmp_path / "demo"
    result = run_demo(DemoArgs(out=str(out), users=150, events_per_user=20, models=("suan",), grade=0, epochs=1,
                               sweep_grades=(0,), sweep_fractions=(0.5, 1.0), sweep_schedule="cosine",
                               distill=False, batch_size=128))
    assert sorted((p["grade"], p["fraction"]) for p in result["scaling"]["points"]) == [(0, 0.5), (0, 1.0)]
    # the comparison's SUAN run trained on plateau: it cannot stand for a cosine point, so the sweep trains it
    points = load_manifest(out / "sweep")["points"].values()
    full = next(p for p in points if p["fraction"] == 1.0)
    assert full["run"] != str(out / "runs" / "suan")
    assert TrainArgs.load(f"{full['run']}/train_config.yaml").schedule == "cosine"
