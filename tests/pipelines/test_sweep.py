"""Sweeps: every grid point trained once, failures recorded without stopping, finished points skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipelines.sweep
from pipelines.args import SweepArgs
from pipelines.cli import main
from pipelines.errors import IncompleteWork
from pipelines.sweep import run_sweep, selected_alike
from scaling.manifest import load_manifest, merge_points


def _data(tmp_path: Path) -> str:
    """A folder that passes the sweep's up-front data check, for tests that replace the training."""
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "feature_map.json").write_text("{}")
    return str(tmp_path / "data")


@pytest.mark.integration
def test_sweep_is_resumable_and_records_failures(tiny_synthetic, tmp_path, monkeypatch):
    args = SweepArgs(data=str(tiny_synthetic / "data"), out=str(tmp_path / "sweep"), grades=(0,),
                     data_fractions=(0.3, 1.0), max_epochs=1)
    real = pipelines.sweep.run_train

    def flaky(train_args):
        if train_args.data_fraction == 0.3:
            raise RuntimeError("disk full")
        return real(train_args)

    monkeypatch.setattr(pipelines.sweep, "run_train", flaky)
    # the other points run, then the sweep fails naming the failed one (a script must not read it as complete)
    with pytest.raises(IncompleteWork, match=r"1 of 2 sweep points failed \(g0-f0.3-s0: RuntimeError: disk full"):
        run_sweep(args)
    manifest = load_manifest(tmp_path / "sweep")
    points = manifest["points"]
    assert points["g0-f0.3-s0"]["status"] == "failed" and "disk full" in points["g0-f0.3-s0"]["error"]
    assert points["g0-f1-s0"]["status"] == "done"
    full = points["g0-f1-s0"]["metrics"]
    assert full["train_samples"] > 0 and points["g0-f1-s0"]["wall_s"] > 0
    # MFU: the point's training FLOP/s over the sweep's own measured matmul peak
    want = 3 * full["flops_per_sample"] * full["samples_per_second"] / manifest["peak_flops"]
    assert points["g0-f1-s0"]["mfu"] == pytest.approx(want) and 0 < want < 1

    calls = []
    monkeypatch.setattr(pipelines.sweep, "run_train", lambda a: calls.append(a) or real(a))
    manifest = run_sweep(args)
    assert [c.data_fraction for c in calls] == [0.3]  # only the failed point runs again
    points = load_manifest(tmp_path / "sweep")["points"]
    assert points["g0-f0.3-s0"]["status"] == "done" and points["g0-f1-s0"]["metrics"] == full
    # the fraction really shrinks the training set (nested, about 30%)
    ratio = points["g0-f0.3-s0"]["metrics"]["train_samples"] / full["train_samples"]
    assert 0.25 < ratio < 0.35


def test_sweep_passes_its_training_options_to_every_point(tmp_path, monkeypatch):
    args = SweepArgs(data=_data(tmp_path), out=str(tmp_path / "sweep"), grades=(0, 1), data_fractions=(0.5,),
                     seq_lens=(0, 40), eval_fraction=0.2, bucket_by_length=True, lr=2e-3, schedule="cosine",
                     warmup_fraction=0.05)
    calls = []
    monkeypatch.setattr(pipelines.sweep, "run_train", lambda a: calls.append(a) or {"test_auc": 0.5})
    manifest = run_sweep(args)
    assert [(c.grade, c.seq_len, c.data_fraction) for c in calls] == [(0, 0, 0.5), (0, 40, 0.5), (1, 0, 0.5), (1, 40, 0.5)]
    assert all(c.bucket_by_length and c.eval_fraction == 0.2 and c.lr == 2e-3 for c in calls)
    assert all(c.schedule == "cosine" and c.warmup_fraction == 0.05 for c in calls)  # a schedule sized to each point
    assert all(c.select_on == "logloss" for c in calls)  # the sweep's default: the laws fit logloss
    # each length has its own point and run folder
    assert sorted(manifest["points"]) == ["g0-L40-f0.5-s0", "g0-f0.5-s0", "g1-L40-f0.5-s0", "g1-f0.5-s0"]
    assert {Path(c.out).name for c in calls} == set(manifest["points"])


def _curve(pairs):
    return [{"valid_auc": a, "valid_logloss": ll} for a, ll in pairs]


@pytest.mark.parametrize(("pairs", "alike"), [
    # every epoch gains or stalls in both metrics alike, one best epoch: the AUC run is the logloss run
    ([(0.60, 0.55), (0.65, 0.50), (0.64, 0.51), (0.66, 0.49), (0.65, 0.52)], True),
    # logloss still falls where AUC stalled: selected on logloss the lr would not have been cut at epoch 2
    ([(0.60, 0.55), (0.65, 0.50), (0.64, 0.48), (0.66, 0.47)], False),
    # the same gains, but the kept epochs differ (AUC's best is epoch 1, logloss's epoch 3 by a sub-threshold step)
    ([(0.60, 0.55), (0.70, 0.50), (0.69995, 0.51), (0.69, 0.49995)], False),
    # sub-threshold gains in both: a stall for the plateau and early stopping, yet the checkpoint moves in both
    ([(0.60, 0.55), (0.60005, 0.54999)], True),
    ([], False),
])
def test_a_run_selected_on_auc_stands_for_a_logloss_point_only_when_it_ran_alike(pairs, alike):
    assert selected_alike(_curve(pairs), "auc", "logloss") is alike
    assert selected_alike(_curve(pairs), "logloss", "auc") is alike  # the relation is symmetric
    assert selected_alike(_curve(pairs), "auc", "auc") is bool(pairs)
    assert selected_alike(_curve(pairs), "logloss", "logloss") is bool(pairs)


def test_a_learning_rate_axis_trains_each_rate_in_its_own_run(tmp_path, monkeypatch):
    args = SweepArgs(data=_data(tmp_path), out=str(tmp_path / "sweep"), grades=(1,), data_fractions=(1.0,), lrs=(3e-4, 3e-3))
    calls = []
    monkeypatch.setattr(pipelines.sweep, "run_train", lambda a: calls.append(a) or {"test_auc": 0.5})
    manifest = run_sweep(args)
    assert [c.lr for c in calls] == [3e-4, 3e-3]
    assert sorted(manifest["points"]) == ["g1-f1-lr0.0003-s0", "g1-f1-lr0.003-s0"]
    assert {p["lr_set"] for p in manifest["points"].values()} == {3e-4, 3e-3}


def _done(grade: int) -> dict:
    return {"grade": grade, "fraction": 1.0, "seed": 0, "status": "done", "wall_s": 1.0, "metrics": {}}


@pytest.mark.parametrize("storage", [False, True])
def test_a_point_another_worker_writes_meanwhile_is_kept(tmp_path, monkeypatch, storage):
    # two workers (or two studies, e.g. a size axis and a data axis) share one folder: each used to write back
    # the manifest it loaded at its start, dropping the points the other had written since
    sweep = tmp_path / "sweep"
    args = SweepArgs(data=_data(tmp_path), out=str(sweep), grades=(1,), data_fractions=(1.0,), seeds=(0, 1),
                     storage=f"sqlite:///{tmp_path / 'sweep.db'}" if storage else "")

    def train(a):  # while this worker trains, another one finishes grade 9
        merge_points(sweep, [_done(9)])
        return {"test_auc": 0.5, "valid_logloss": 0.6}

    monkeypatch.setattr(pipelines.sweep, "run_train", train)
    run_sweep(args)
    points = load_manifest(sweep)["points"]
    assert sorted(points) == ["g1-f1-s0", "g1-f1-s1", "g9-f1-s0"]
    assert all(p["status"] == "done" for p in points.values())


def test_a_point_another_worker_is_training_is_not_trained_twice(tmp_path, monkeypatch):
    import optuna

    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    args = SweepArgs(data=_data(tmp_path), out=str(tmp_path / "sweep"), grades=(1,), data_fractions=(1.0,), seeds=(0, 1),
                     storage=storage)
    space = {"grade": [1], "seq_len": [0], "fraction": [1.0], "lr": [0.0], "seed": [0, 1]}
    other = optuna.create_study(study_name="sweep", storage=storage, sampler=optuna.samplers.GridSampler(space))
    held = other.ask()  # another worker holds one grid point and is still training it
    held_seed = [held.suggest_categorical(k, v) for k, v in space.items()][-1]
    calls = []
    monkeypatch.setattr(pipelines.sweep, "run_train",
                        lambda a: calls.append(a.seed) or {"test_auc": 0.5, "valid_logloss": 0.6})
    run_sweep(args)
    # Optuna's grid sampler re-draws the held point once no untaken one is left: it must not be trained here
    assert calls == [1 - held_seed]
    optuna.load_study(study_name="sweep", storage=storage).tell(held.number, 0.6)  # the other worker finishes
    run_sweep(args)  # a rerun of the finished sweep trains nothing
    assert calls == [1 - held_seed]


def test_the_retry_of_a_dead_workers_point_resumes_its_checkpoint(tmp_path, monkeypatch):
    import optuna

    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    sweep = tmp_path / "sweep"
    args = SweepArgs(data=_data(tmp_path), out=str(sweep), grades=(1,), data_fractions=(1.0,), seeds=(0,), storage=storage)
    space = {"grade": [1], "seq_len": [0], "fraction": [1.0], "lr": [0.0], "seed": [0]}
    # the dead worker's own sampler is not stored with the study (a grid sampler would stop it on tell)
    other = optuna.create_study(study_name="sweep", storage=storage, sampler=optuna.samplers.RandomSampler())
    dead = other.ask()  # a worker took the point, wrote a checkpoint and died
    [dead.suggest_categorical(k, v) for k, v in space.items()]
    (sweep / "runs" / f"g1-f1-s0-t{dead.number}" / "checkpoints").mkdir(parents=True)
    (sweep / "runs" / f"g1-f1-s0-t{dead.number}" / "checkpoints" / "last.ckpt").write_bytes(b"")
    other.tell(dead.number, state=optuna.trial.TrialState.FAIL)  # what the heartbeat check does to a stale trial
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(other, other.trials[dead.number])
    calls = []
    monkeypatch.setattr(pipelines.sweep, "run_train",
                        lambda a: calls.append((Path(a.out).name, a.resume)) or {"test_auc": 0.5, "valid_logloss": 0.6})
    run_sweep(args)
    assert calls == [(f"g1-f1-s0-t{dead.number}", True)]  # the dead run's folder, from its last checkpoint
    assert load_manifest(sweep)["points"]["g1-f1-s0"]["status"] == "done"


def test_a_finished_point_is_never_replaced_and_a_failed_one_is(tmp_path):
    merge_points(tmp_path, [_done(1), {**_done(2), "status": "failed"}])
    merge_points(tmp_path, [{**_done(1), "status": "failed"}, _done(2)])
    # one call with two entries for a point (a retried trial): the done one stays, in either order
    merge_points(tmp_path, [_done(3), {**_done(3), "status": "failed"}, {**_done(4), "status": "failed"}, _done(4)])
    assert {n: p["status"] for n, p in load_manifest(tmp_path)["points"].items()} == {
        "g1-f1-s0": "done", "g2-f1-s0": "done", "g3-f1-s0": "done", "g4-f1-s0": "done"}


def test_fitting_a_folder_without_finished_points_says_so(tmp_path):
    from pipelines.cli import main

    assert main(["scale", "fit", "--sweep", str(tmp_path)]) == 2


@pytest.mark.slow
def test_two_workers_share_one_sweep_through_optuna_storage(tiny_synthetic, tmp_path):
    import os
    import subprocess
    import sys

    import optuna

    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    cmd = [sys.executable, "-m", "pipelines", "scale", "sweep", "--data", str(tiny_synthetic / "data"),
           "--out", str(tmp_path / "sweep"), "--grades", "0", "--data-fractions", "0.5,1.0", "--seeds", "0,1",
           "--max-epochs", "1", "--storage", storage]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    trials = optuna.load_study(study_name="sweep", storage=storage).get_trials()
    done = {(t.params["fraction"], t.params["seed"]) for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert done == {(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)}  # every grid point, whichever worker took it
    points = load_manifest(tmp_path / "sweep")["points"]
    assert sorted(points) == ["g0-f0.5-s0", "g0-f0.5-s1", "g0-f1-s0", "g0-f1-s1"]
    assert all(p["status"] == "done" and p["metrics"]["train_samples"] > 0 for p in points.values())


def test_a_sweep_over_a_missing_data_folder_fails_at_once_naming_it(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(pipelines.sweep, "run_train", lambda a: calls.append(a) or {"test_auc": 0.5})
    out = tmp_path / "sweep"
    assert main(["scale", "sweep", "--data", str(tmp_path / "nowhere"), "--out", str(out), "--grades", "0,1"]) == 2
    err = capsys.readouterr().err
    assert "nowhere/feature_map.json" in err and "suan data prepare" in err
    assert calls == [] and not out.exists()


def test_a_sweep_with_a_failed_point_exits_1_and_negative_grades_parse(tmp_path, monkeypatch, capsys):
    def train(a):
        if a.grade == -1:
            raise RuntimeError("out of memory")
        return {"test_auc": 0.5, "valid_logloss": 0.6}

    monkeypatch.setattr(pipelines.sweep, "run_train", train)
    out = tmp_path / "sweep"
    # a list opening with a negative grade is a value, not an option
    assert main(["scale", "sweep", "--data", _data(tmp_path), "--out", str(out), "--grades", "-2,-1,0"]) == 1
    err = capsys.readouterr().err
    assert "2 of 6 sweep points failed (g-1-f0.25-s0: RuntimeError: out of memory; g-1-f1-s0" in err
    points = load_manifest(out)["points"]
    assert sorted(n for n, p in points.items() if p["status"] == "done") == [
        "g-2-f0.25-s0", "g-2-f1-s0", "g0-f0.25-s0", "g0-f1-s0"]


def test_a_schedule_no_point_could_train_with_fails_the_sweep_at_once(tmp_path):
    with pytest.raises(ValueError, match="warm-up needs"):  # plateau changes the lr by epoch: no warm-up
        SweepArgs(data=str(tmp_path), out=str(tmp_path / "sweep"), warmup_fraction=0.1)
    with pytest.raises(ValueError, match="not both"):
        SweepArgs(data=str(tmp_path), out=str(tmp_path / "sweep"), schedule="cosine", warmup_steps=5,
                  warmup_fraction=0.1)
