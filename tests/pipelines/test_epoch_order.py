"""Every training epoch sees a new permutation of the rows, a function of (seed, epoch), through the real trainer."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest

from pipelines.args import TrainArgs
from pipelines.datamodule import ShardStream
from pipelines.systems import CTRSystem
from pipelines.tracking import make_logger
from pipelines.train import build_trainer, model_config, start_run
from suan.models.ctr import build_model


class RecordOrder(L.Callback):
    """The (user, target time) of every training row, per epoch, in the order the model saw them."""

    def __init__(self) -> None:
        self.epochs: dict[int, list[tuple[int, int]]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        rows = zip(batch["user_key"].tolist(), batch["target_ts"].tolist(), strict=True)
        self.epochs.setdefault(trainer.current_epoch, []).extend(rows)


def _stream_order(data: Path, fmap, seed: int, epoch: int, batch_size: int) -> list[tuple[int, int]]:
    stream = ShardStream(sorted((data / "train").glob("*.parquet")), fmap, batch_size, shuffle=True, seed=seed)
    stream.set_epoch(epoch)
    return [row for b in stream for row in zip(b["user_key"].tolist(), b["target_ts"].tolist(), strict=True)]


@pytest.mark.integration
def test_each_epoch_trains_on_its_own_permutation(tiny_synthetic, tmp_path):
    data = tiny_synthetic / "data"
    args = TrainArgs(data=str(data), out=str(tmp_path / "run"), model="dnn", grade=0, max_epochs=3, patience=5,
                     batch_size=128, progress=False, mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    out, dm = start_run(args)
    system = CTRSystem(build_model(model_config(args, dm.fmap), dm.fmap), args.optim())
    trainer, _, _ = build_trainer(args, out, make_logger(args.mlflow_uri, "test", "order", out))
    recorder = RecordOrder()
    trainer.callbacks.append(recorder)
    trainer.fit(system, dm)
    seen = recorder.epochs
    assert sorted(seen) == [0, 1, 2]
    # the same rows every epoch, each epoch in a different order
    assert sorted(seen[0]) == sorted(seen[1]) == sorted(seen[2])
    assert seen[0] != seen[1] and seen[1] != seen[2] and seen[0] != seen[2]
    # and each order is the stream's own for (seed, epoch): reproducible, hence resumable
    for epoch in (0, 1, 2):
        assert seen[epoch] == _stream_order(data, dm.fmap, args.seed, epoch, args.batch_size)
