"""Golden losses: the first 20 training steps of SUAN and DNN on the tiny synthetic set, step by step.

A change anywhere in the numerics of training (data order, init, model, loss, L2 term, optimiser, schedule)
moves these losses; the test says so at once instead of a quality run finding it days later. When a change
is meant to move them, regenerate and commit the file with the change:
``SUAN_REGEN_GOLDEN=1 python -m pytest tests/pipelines/test_golden_loss.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import pytest

from pipelines.args import TrainArgs
from pipelines.train import run_train

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "tiny_train_losses.json"
STEPS = 20
# same machine and thread count as the recording (dev.sh test pins one intra-op thread); a different BLAS
# or thread count may move the last digits, never the third
RTOL = 1e-4


class StepLosses(L.Callback):
    """The training objective (BCE + embedding L2) of every step, as the optimiser saw it."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _losses(data: Path, out: Path, model: str) -> list[float]:
    recorder = StepLosses()
    args = TrainArgs(data=str(data), out=str(out), model=model, grade=0, batch_size=64, max_steps=STEPS, seed=0,
                     progress=False, mlflow_uri=f"sqlite:///{out.parent / 'mlflow.db'}")
    run_train(args, callbacks=(recorder,))
    return recorder.losses


@pytest.mark.slow
def test_the_first_twenty_steps_match_the_golden_losses(tiny_synthetic, tmp_path):
    got = {model: _losses(tiny_synthetic / "data", tmp_path / model, model) for model in ("suan", "dnn")}
    for model, losses in got.items():
        assert len(losses) == STEPS, model
        assert sum(losses[-5:]) < sum(losses[:5]), f"{model}: the loss did not fall in {STEPS} steps: {losses}"
    if os.environ.get("SUAN_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    assert GOLDEN.exists(), f"no golden file: record it with SUAN_REGEN_GOLDEN=1 (see {__name__}'s docstring)"
    golden = json.loads(GOLDEN.read_text())
    for model, losses in got.items():
        for step, (a, b) in enumerate(zip(losses, golden[model], strict=True)):
            assert a == pytest.approx(b, rel=RTOL), f"{model} step {step}: {a} != golden {b}"
