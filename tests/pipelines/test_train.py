"""Real Lightning training on tiny synthetic data: metrics, model folder, MLflow store, eval, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from mlflow.tracking import MlflowClient

from pipelines.args import EvalArgs, TrainArgs
from pipelines.artifacts import load_model_dir
from pipelines.evaluate import run_eval
from pipelines.train import build_trainer, run_train
from suan.models.counts import count_params

REPO = Path(__file__).resolve().parents[2]
KEYS = {"test_auc", "test_gauc", "test_logloss", "valid_auc", "params_dense", "params_embedding",
        "flops_per_sample", "train_samples", "samples_per_second"}


def _args(data, out, **kw) -> TrainArgs:
    base = dict(data=str(data), out=str(out), grade=0, max_epochs=2, batch_size=256, lr=3e-3, progress=False,
                mlflow_uri=f"sqlite:///{Path(out).parent / 'mlflow' / 'mlflow.db'}", log_every_n_steps=5)
    return TrainArgs(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tiny_synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "suan-g0"
    metrics = run_train(_args(tiny_synthetic / "data", out))
    return out, metrics


@pytest.mark.integration
def test_train_writes_metrics_and_a_loadable_model(trained):
    out, metrics = trained
    on_disk = json.loads((out / "metrics.json").read_text())
    assert KEYS <= set(on_disk)
    assert on_disk == pytest.approx(metrics)
    # the planted signal is learnable: two epochs of the smallest grade beat chance clearly
    assert metrics["test_auc"] > 0.6 and metrics["valid_auc"] > 0.6
    assert metrics["stopped_early"] == 0.0  # 2 epochs with patience 2: the epoch budget ended it
    model, cfg, _ = load_model_dir(out / "model")
    params = count_params(model)
    assert (params["dense"], params["embedding"]) == (metrics["params_dense"], metrics["params_embedding"])
    assert cfg.arch == "suan" and cfg.grade == 0


@pytest.mark.integration
def test_a_run_records_whether_early_stopping_or_its_budget_ended_it(tiny_synthetic, tmp_path):
    metrics = run_train(_args(tiny_synthetic / "data", tmp_path / "run", max_epochs=12, patience=1, lr=1e-2))
    assert metrics["epochs"] < 12  # tiny data at a high lr: valid stalls well before 12 epochs
    assert metrics["stopped_early"] == 1.0


@pytest.mark.parametrize(("select_on", "monitor", "mode"), [("auc", "valid_auc", "max"),
                                                          ("logloss", "valid_logloss", "min")])
def test_the_selection_metric_drives_the_checkpoint_and_early_stopping(tmp_path, select_on, monitor, mode):
    trainer, best, _ = build_trainer(_args(tmp_path, tmp_path / "run", select_on=select_on), tmp_path / "run", False)
    stop = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))
    assert (best.monitor, best.mode, stop.monitor, stop.mode) == (monitor, mode, monitor, mode)


@pytest.mark.integration
def test_mlflow_store_holds_params_metrics_and_artifacts(trained):
    out, metrics = trained
    run_id = (out / "mlflow_run_id").read_text().strip()
    client = MlflowClient(tracking_uri=f"sqlite:///{out.parent / 'mlflow' / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.data.params["train.grade"] == "0" and run.data.params["model.arch"] == "suan"
    assert run.data.tags["git_sha"] and run.data.tags["feature_map_hash"]
    assert run.data.metrics["final_test_auc"] == pytest.approx(metrics["test_auc"])
    history = client.get_metric_history(run_id, "valid_auc")
    assert len(history) >= 2  # per epoch, plus the best-checkpoint validation
    assert len(client.get_metric_history(run_id, "train_loss_step")) >= 3  # per step
    artifacts = {a.path for a in client.list_artifacts(run_id, "model")}
    assert {"model/model.pt", "model/model_config.json", "model/feature_map.json"} <= artifacts


@pytest.mark.integration
def test_eval_reproduces_the_test_metrics(trained, tiny_synthetic):
    out, metrics = trained
    again = run_eval(EvalArgs(run=str(out)))
    assert again["test_auc"] == pytest.approx(metrics["test_auc"], abs=1e-9)
    assert again["test_logloss"] == pytest.approx(metrics["test_logloss"], rel=1e-6)


@pytest.mark.integration
def test_refuses_to_overwrite_a_run_without_resume(trained, tiny_synthetic):
    from suan.utils.config import ConfigError

    out, _ = trained
    with pytest.raises(ConfigError, match="--resume"):
        run_train(_args(tiny_synthetic / "data", out))


def test_resuming_with_another_model_is_refused_with_the_differences(trained, tiny_synthetic):
    from suan.utils.config import ConfigError

    out, _ = trained  # started with today's defaults: the authors' wiring
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(ConfigError, match="wiring: 'authors' then, 'branches' now"):
        run_train(_args(tiny_synthetic / "data", out, resume=True, wiring="branches"))
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing written


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "LOCAL_RANK", "RANK", "WORLD_SIZE",
                                                                    "NODE_RANK", "PL_", "GROUP_RANK"))}
    # same intra-op thread count as this process: runs compared bit for bit must reduce in the same order
    threads = str(torch.get_num_threads())
    return {**env, "OMP_NUM_THREADS": threads, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def _train_cmd(args: TrainArgs) -> list[str]:
    cmd = [sys.executable, "-m", "pipelines", "train"]
    for key, value in args.to_dict().items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            cmd.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):  # the CLI's A,B,... form; an empty list is the default
            cmd += [flag, ",".join(map(str, value))] if value else []
        else:
            cmd += [flag, str(value)]
    return cmd


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_metrics(tiny_synthetic, tmp_path):
    data = tiny_synthetic / "data"
    straight = run_train(_args(data, tmp_path / "straight", max_epochs=3, patience=5, dropout=0.1))
    killed = _args(data, tmp_path / "killed", max_epochs=3, patience=5, dropout=0.1)
    proc = subprocess.Popen(_train_cmd(killed), cwd=REPO, env=_clean_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run never wrote a checkpoint"
    assert not (tmp_path / "killed" / "metrics.json").exists(), "killed too late: the run had finished"
    resumed = run_train(killed.replace(resume=True))
    for key in ("valid_auc", "test_auc", "test_gauc", "test_logloss", "global_step"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6, abs=1e-9), key


@pytest.mark.slow
def test_sigtermed_run_exits_143_keeps_its_checkpoint_and_resumes(tiny_synthetic, tmp_path):
    # Lightning turns SIGTERM (a scheduler's preemption, `kill`) into an exit without a code: status 0 would let
    # `suan train && suan export` go on with a run that never finished
    args = _args(tiny_synthetic / "data", tmp_path / "termed", max_epochs=3, patience=5)
    proc = subprocess.Popen(_train_cmd(args), cwd=REPO, env=_clean_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    last = tmp_path / "termed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert not (tmp_path / "termed" / "metrics.json").exists(), "terminated too late: the run had finished"
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr
    assert last.exists()
    resumed = run_train(args.replace(resume=True))
    assert resumed["global_step"] > 0 and (tmp_path / "termed" / "metrics.json").exists()


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny_synthetic, tmp_path):
    args = _args(tiny_synthetic / "data", tmp_path / "ddp", max_epochs=1, accelerator="cpu", devices=2,
                 strategy="ddp")
    done = subprocess.run(_train_cmd(args), cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    # each of the 2 ranks sees half the rows, so one epoch is half the single-process step count
    per_rank = metrics["train_samples"] // 2
    assert metrics["global_step"] == -(-per_rank // 256)
    assert metrics["test_auc"] > 0.55


def test_a_moved_run_folder_keeps_its_best_checkpoint_score_on_resume(tmp_path):
    from pipelines.callbacks import RunFolderCheckpoint

    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    saved = RunFolderCheckpoint(dirpath=old, filename="best", monitor="valid_logloss", mode="min", save_last=True)
    saved.best_model_score, saved.best_model_path = torch.tensor(0.5132), str(old / "best.ckpt")
    saved.best_k_models, saved.last_model_path = {str(old / "best.ckpt"): torch.tensor(0.5132)}, str(old / "last.ckpt")
    moved = RunFolderCheckpoint(dirpath=new, filename="best", monitor="valid_logloss", mode="min", save_last=True)
    moved.load_state_dict(saved.state_dict())
    # Lightning's own callback drops the score on a changed dirpath, so a worse epoch would become "best"
    assert float(moved.best_model_score) == pytest.approx(0.5132)
    assert moved.best_model_path == str(new / "best.ckpt") and moved.last_model_path == str(new / "last.ckpt")
    assert list(moved.best_k_models) == [str(new / "best.ckpt")]
