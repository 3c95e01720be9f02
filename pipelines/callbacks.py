"""Lightning callbacks: RNG state in checkpoints (exact resume) and training throughput."""

from __future__ import annotations

import errno
import json
import os
import random
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint beside its target and renames it, so a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)  # a full disk must not leave half a checkpoint behind
            if isinstance(exc, RuntimeError):  # torch's word for a failed write
                raise OSError(errno.EIO, f"writing the checkpoint failed ({exc}); is the disk full?", str(path)) from exc
            raise


class RNGStateCallback(L.Callback):
    """Saves and restores Python, numpy and torch RNG states: Lightning's checkpoint does not."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # plain lists and ints only, so the checkpoint still loads with torch.load(weights_only=True)
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {
            "python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states:
            random.setstate(states["python"])
            kind, keys, pos, has_gauss, cached = states["numpy"]
            np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
            torch.set_rng_state(states["torch"])


class ThroughputCallback(L.Callback):
    """Counts training samples and time spent in training epochs."""

    def __init__(self) -> None:
        self.samples, self.seconds, self._t0 = 0, 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += int(batch["label"].shape[0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds += time.perf_counter() - self._t0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


class EpochCurve(L.Callback):
    """Per-epoch valid metrics, training loss and lr, kept in checkpoints and written to ``curve.json``.

    The curve is the evidence for a schedule and an early stop (plotted by ``suan compare``); holding
    it in the checkpoint keeps a resumed run's curve whole.
    """

    def __init__(self, path: Path) -> None:
        self.path, self.epochs = Path(path), []
        self._loss, self._rows = 0.0, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._loss, self._rows = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the training objective (BCE + embedding L2) as the step returned it, averaged over rows
        rows = int(batch["label"].shape[0])
        self._loss += float(outputs["loss"]) * rows
        self._rows += rows

    def on_validation_end(self, trainer, pl_module) -> None:
        # after the system logged this epoch's metrics, before ModelCheckpoint saves (checkpointing runs last)
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("valid_")}
        lrs = [g["lr"] for g in trainer.optimizers[0].param_groups] if trainer.optimizers else []
        self.epochs.append({"epoch": trainer.current_epoch, "step": trainer.global_step,
                            "lr": max(lrs) if lrs else 0.0,
                            "train_objective": self._loss / self._rows if self._rows else float("nan"), **metrics})
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(self.epochs, indent=1) + "\n")

    def state_dict(self) -> dict:
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epochs = list(state_dict.get("epochs", []))


class RunFolderCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose state survives a moved run folder.

    Lightning restores the best score and paths only when the checkpoint's ``dirpath`` is this callback's;
    a run folder copied or mounted elsewhere (a cluster's other mount point, a restored backup) resumed with
    no best score and the old folder's ``best_model_path``, so the next epoch, however worse, became "best"
    and overwrote best.ckpt (measured: a resumed sweep point reported valid logloss 0.5138 where its best
    epoch had 0.5132). Paths inside the old checkpoint folder are re-rooted here before Lightning reads them.
    """

    def load_state_dict(self, state_dict: dict) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:
            def here(path):
                return str(Path(self.dirpath) / Path(path).name) if path and Path(path).parent == Path(old) else path
            state_dict = {**state_dict, "dirpath": self.dirpath,
                          **{k: here(state_dict.get(k)) for k in ("best_model_path", "kth_best_model_path",
                                                                  "last_model_path")},
                          "best_k_models": {here(k): v for k, v in state_dict.get("best_k_models", {}).items()}}
        super().load_state_dict(state_dict)
