"""``suan scale sweep``: grades x lengths x data fractions x learning rates x seeds, each trained by the normal pipeline.

Resumable: finished points are skipped, a failed point is recorded with its error and the sweep
goes on, then ends with :class:`IncompleteWork` naming the failed points (exit status 1); every point
is merged into ``manifest.json`` as it finishes (atomically, under a file lock, into the file as it is
then: several workers and studies share one folder without dropping each other's points, and ``suan
scale fit`` can follow a sweep while it runs). All runs log to one MLflow experiment (the sweep folder's
name) with grade / fraction / seed as parameters and tags.

With ``--storage`` the grid is an Optuna study (``GridSampler``) on that RDB: every process or machine
given the same command takes the next untaken point until the grid is done, a point whose worker died
is retried (Optuna's heartbeat), and each worker merges the whole study into ``manifest.json`` when it
ends. No scheduler of our own: the storage is the coordination.
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import optuna
import torch

from features.errors import DataError
from pipelines.args import SweepArgs, TrainArgs
from pipelines.errors import IncompleteWork
from pipelines.mfu import matmul_peak, mfu
from pipelines.tracking import sqlite_lock
from pipelines.train import run_train
from scaling.manifest import entry_name, load_manifest, merge_points, point_name
from suan.recipe.config import SELECTION
from suan.recipe.optim import PLATEAU_THRESHOLD


def run_point(args: SweepArgs, sweep: Path, grade: int, fraction: float, seed: int, peak: float,
              tag: str = "", seq_len: int = 0, lr: float = 0.0) -> dict:
    """Train one point (resuming its run folder if it has a checkpoint); its manifest entry, done or failed.

    ``tag`` suffixes the run folder: in a shared sweep two workers may draw the same point at once, and each
    must own its folder.
    """
    uri = args.mlflow_uri or f"sqlite:///{(sweep / 'mlflow' / 'mlflow.db').resolve()}"
    run = sweep / "runs" / (point_name(grade, fraction, seed, seq_len, lr) + tag)
    train = TrainArgs(data=args.data, out=str(run), model=args.model, grade=grade, seed=seed, seq_len=seq_len,
                      data_fraction=fraction, max_epochs=args.max_epochs, batch_size=args.batch_size,
                      lr=lr or args.lr, patience=args.patience, schedule=args.schedule,
                      warmup_steps=args.warmup_steps, warmup_fraction=args.warmup_fraction,
                      select_on=args.select_on, eval_fraction=args.eval_fraction,
                      bucket_by_length=args.bucket_by_length, mlflow_uri=uri, experiment=f"sweep-{sweep.name}",
                      progress=False, resume=(run / "checkpoints" / "last.ckpt").exists())
    start = time.perf_counter()
    entry = {**point_entry(grade, fraction, seed, run, seq_len, lr), "lr": lr or args.lr}
    try:
        mark_done(entry, run_train(train), peak)
    except Exception as exc:  # noqa: BLE001 - a failed point is recorded, the sweep goes on
        entry.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    entry["wall_s"] = time.perf_counter() - start
    return entry


def point_entry(grade: int, fraction: float, seed: int, run: Path, seq_len: int = 0, lr: float = 0.0) -> dict:
    """A point's manifest entry before its outcome (``seq_len``/``lr`` 0: the grade's own L, the sweep's lr)."""
    return {"grade": grade, "fraction": fraction, "seed": seed, "seq_len_set": seq_len, "lr_set": lr, "run": str(run)}


def mark_done(entry: dict, metrics: dict, peak: float) -> dict:
    """Record a finished point's metrics and its MFU against ``peak``."""
    entry.update(status="done", metrics=metrics,
                 mfu=mfu(metrics.get("flops_per_sample", 0.0), metrics.get("samples_per_second", 0.0), peak))
    return entry


def selected_alike(curve: list[dict], ran_on: str, select_on: str) -> bool:
    """Whether a run that selected, stopped and cut its lr on ``ran_on`` ran exactly as it would have on
    ``select_on``: at every epoch one metric gained (beyond the plateau threshold) exactly when the other did,
    so its lr cuts and its stop fell alike, and both keep the same epoch. Then its checkpoint is the point a
    sweep selecting on ``select_on`` would train, and can stand for it.

    Args:
        curve: the run's ``curve.json`` (per epoch ``valid_auc`` and ``valid_logloss``).
        ran_on: the run's own selection metric (``select_on`` in its ``train_config.yaml``), a key of ``SELECTION``.
        select_on: the sweep's selection metric, a key of ``SELECTION``.
    """
    def gains_and_kept(values: list[float], mode: str) -> tuple[list[bool], int]:
        sign = 1.0 if mode == "max" else -1.0
        best, gains = -math.inf, []
        for v in values:
            gains.append(sign * v > best + PLATEAU_THRESHOLD)
            best = max(best, sign * v) if gains[-1] else best
        kept = max(range(len(values)), key=lambda i: (sign * values[i], -i))  # the first of the best, as saved
        return gains, kept

    ref_name, ref_mode = SELECTION[ran_on]
    name, mode = SELECTION[select_on]
    return bool(curve) and gains_and_kept([e[ref_name] for e in curve], ref_mode) == \
        gains_and_kept([e[name] for e in curve], mode)


def _report(k: int, total: int, entry: dict) -> None:
    name = entry_name(entry)
    auc = entry.get("metrics", {}).get("test_auc", float("nan"))
    print(f"[{k}/{total}] {name}: {entry['status']} test AUC {auc:.4f} ({entry['wall_s']:.0f} s)", flush=True)


def run_sweep(args: SweepArgs) -> dict:
    """Train every missing point of the grid; returns the manifest (raises :class:`IncompleteWork` after the
    other points when some failed)."""
    _check_data(Path(args.data))
    sweep = Path(args.out)
    sweep.mkdir(parents=True, exist_ok=True)
    # this machine's measured matmul peak, with the training runs' thread count: the denominator of MFU
    peak = load_manifest(sweep).get("peak_flops") or matmul_peak(device="cuda" if torch.cuda.is_available() else "cpu")
    manifest = merge_points(sweep, [], config=args.to_dict(), peak_flops=peak)
    if args.storage:
        return _all_done(args, _shared_sweep(args, sweep, peak))
    grid = _grid(args)
    for k, (grade, seq_len, fraction, lr, seed) in enumerate(grid, start=1):
        name = point_name(grade, fraction, seed, seq_len, lr)
        if manifest["points"].get(name, {}).get("status") == "done":
            continue
        entry = run_point(args, sweep, grade, fraction, seed, peak, seq_len=seq_len, lr=lr)
        manifest = merge_points(sweep, [entry])
        _report(k, len(grid), entry)
    return _all_done(args, manifest)


def _grid(args: SweepArgs) -> list[tuple[int, int, float, float, int]]:
    """Every (grade, seq_len, fraction, lr, seed) point of the sweep; lr 0: the sweep's one lr, not an axis."""
    return [(g, n, f, r, s) for g in args.grades for n in args.seq_lens for f in args.data_fractions
            for r in args.lrs or (0.0,) for s in args.seeds]


def _check_data(data: Path) -> None:
    """A missing or unprepared data folder fails the sweep at once, not each of its points in turn."""
    if not (data / "feature_map.json").is_file():
        raise DataError(data / "feature_map.json", None, None,
                        "not a prepared data folder (no feature_map.json): make one with `suan data prepare`")


def _all_done(args: SweepArgs, manifest: dict) -> dict:
    """The manifest, unless a point of this sweep's grid failed: then :class:`IncompleteWork` naming them. (A
    point another worker of a shared sweep is still training is not a failure: that worker reports it.)"""
    names = [point_name(g, f, s, n, r) for g, n, f, r, s in _grid(args)]
    failed = [name for name in names if manifest["points"].get(name, {}).get("status") == "failed"]
    if failed:
        errors = "; ".join(f"{name}: {manifest['points'][name].get('error', '?')}" for name in failed[:3])
        raise IncompleteWork(f"{len(failed)} of {len(names)} sweep points failed ({errors}"
                             f"{'; …' if len(failed) > 3 else ''}); the others are in "
                             f"{Path(args.out) / 'manifest.json'}; run the same command again to retry the failed")
    return manifest


def _shared_sweep(args: SweepArgs, sweep: Path, peak: float) -> dict:
    """The grid as an Optuna study on ``args.storage``: take points until none is left. Each finished point is
    merged into the manifest at once (a fit can follow the sweep while it runs); at the end every trial of the
    study is merged again, so a point whose worker died after training is not lost."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"grade": list(args.grades), "seq_len": list(args.seq_lens), "fraction": list(args.data_fractions),
             "lr": list(args.lrs or (0.0,)), "seed": list(args.seeds)}
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    with sqlite_lock(args.storage):  # the first worker creates the schema and the study, the others load them
        storage = optuna.storages.RDBStorage(args.storage, heartbeat_interval=60, grace_period=180,
                                             heartbeat_stale_trial_callback=retry)
        study = optuna.create_study(study_name=args.study or sweep.name, storage=storage, load_if_exists=True,
                                    sampler=optuna.samplers.GridSampler(space, seed=0), direction="minimize")
    total = int(np.prod([len(v) for v in space.values()]))

    def objective(trial: optuna.Trial) -> float:
        point = {k: trial.suggest_categorical(k, v) for k, v in space.items()}
        if _taken_elsewhere(study, trial, point):
            study.stop()  # nothing is left for this worker: the others finish the points they hold
            raise optuna.TrialPruned(f"{point} is being trained or was trained by another trial")
        entry = run_point(args, sweep, point["grade"], point["fraction"], point["seed"], peak,
                          tag=_run_tag(study, trial), seq_len=point["seq_len"], lr=point["lr"])
        trial.set_user_attr("entry", {k: v for k, v in entry.items() if k != "traceback"})
        merge_points(sweep, [entry])
        _report(trial.number + 1, total, entry)
        if entry["status"] != "done":
            raise RuntimeError(entry["error"])
        return float(entry["metrics"]["valid_logloss"])

    # the sampler stops the study once every grid point is taken (by any worker)
    if not _all_complete(study, total):
        study.optimize(objective, n_trials=total, catch=(RuntimeError,))
    # a retried point has two trials: merge_points keeps the done one
    entries = [t.user_attrs["entry"] for t in study.get_trials(deepcopy=False) if "entry" in t.user_attrs]
    return merge_points(sweep, entries, storage=args.storage)


def _run_tag(study: optuna.Study, trial: optuna.Trial) -> str:
    """The run folder's suffix: the trial's number, or for Optuna's retry of a dead worker's trial the number of
    the first trial of that series, so the retry resumes the dead run's last checkpoint instead of training the
    point again from scratch (a killed grade-3 point had cost its whole training time again)."""
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(frozen)
    return f"-t{history[0] if history else trial.number}"


def _taken_elsewhere(study: optuna.Study, trial: optuna.Trial, point: dict) -> bool:
    """Whether another trial holds ``point`` (running, or finished well). Once no untaken point is left,
    Optuna's grid sampler re-draws one that is still running elsewhere, so a free worker would train a point
    another worker is training (measured: a second 20-minute grade-3 run of the same seed), and a rerun of a
    finished sweep would train a point again. A worker that died is covered by the heartbeat retry instead."""
    states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE)
    return any(t.number != trial.number and t.params == point for t in study.get_trials(deepcopy=False, states=states))


def _all_complete(study: optuna.Study, total: int) -> bool:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return len({tuple(sorted(t.params.items())) for t in done}) >= total
