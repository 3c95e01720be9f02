"""A run's outputs are all or nothing, and every consumer refuses an incomplete or altered model folder."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import pipelines.train as train_module
from features.model_folder import ModelFolderError, check_model_folder
from pipelines.args import TrainArgs
from pipelines.artifacts import load_model_dir
from pipelines.callbacks import AtomicCheckpointIO
from pipelines.cli import main
from pipelines.train import run_train


def _args(data: Path, out: Path, **kw) -> TrainArgs:
    return TrainArgs(**{**dict(data=str(data), out=str(out), model="dnn", grade=0, max_epochs=1, progress=False,
                               mlflow_uri=f"sqlite:///{out.parent / 'mlflow.db'}"), **kw})


@pytest.fixture(scope="module")
def finished(tiny_synthetic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("outputs") / "run"
    run_train(_args(tiny_synthetic / "data", out))
    return out


def test_a_finished_model_folder_passes_and_records_its_hashes(finished):
    fmap = check_model_folder(finished / "model")
    assert (finished / "model" / "files.json").exists() and fmap.vocab_sizes()
    assert not list(finished.glob(".*tmp*")) and not list((finished / "checkpoints").glob(".*tmp*"))


def test_a_missing_vocabulary_is_refused_by_eval_and_export(finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    victim = next((run / "model" / "vocab").glob("*.parquet"))
    victim.unlink()
    with pytest.raises(ModelFolderError, match=f"missing \\['vocab/{victim.name}'\\]"):
        load_model_dir(run / "model")
    assert main(["eval", "--run", str(run)]) == 2
    assert f"vocab/{victim.name}" in capsys.readouterr().err
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "serving")]) == 2
    assert not (tmp_path / "serving").exists()


def test_a_truncated_weights_file_is_caught_by_its_hash(finished, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(finished / "model", model)
    data = (model / "model.pt").read_bytes()
    (model / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFolderError, match=r"\['model.pt'\] changed"):
        check_model_folder(model)


def test_a_failed_write_leaves_no_finished_run_and_marks_mlflow_failed(tiny_synthetic, tmp_path, monkeypatch, capsys):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "model"))

    monkeypatch.setattr(train_module, "save_model_dir", disk_full)
    args = _args(tiny_synthetic / "data", tmp_path / "run")
    with pytest.raises(OSError, match="No space left"):
        run_train(args)
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / "model").exists()
    run_id = (tmp_path / "run" / "mlflow_run_id").read_text().strip()
    assert MlflowClient(args.mlflow_uri).get_run(run_id).info.status == "FAILED"
    # the CLI says it in one line that names the path
    assert main(["train", "--data", args.data, "--out", str(tmp_path / "again"), "--model", "dnn", "--grade", "0",
                 "--max-epochs", "1", "--no-progress", "--mlflow-uri", args.mlflow_uri]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"suan: error: cannot write or read {tmp_path / 'run' / 'model'}: No space left on device"


def test_a_checkpoint_that_fails_to_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    def half_then_fail(self, checkpoint, path, storage_options=None):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 64 vs 0")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", half_then_fail)
    with pytest.raises(OSError, match="is the disk full"):
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / "best.ckpt")
    assert list(tmp_path.iterdir()) == []
