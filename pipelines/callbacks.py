"""Lightning callbacks: RNG state in checkpoints (exact resume) and training throughput."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint beside its target and renames it, so a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


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
