"""Exact evaluation metrics of one pass over a split (every row kept, nothing estimated from batches)."""

from __future__ import annotations

import numpy as np
import torch

from suan.utils.metrics import auc, gauc, logloss


class EvalBuffer:
    """Collects (user, label, score) of one evaluation pass and computes exact metrics."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, users: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor) -> None:
        self.parts.append((users.cpu().numpy(), labels.cpu().numpy(), probs.detach().float().cpu().numpy()))

    def compute(self) -> dict[str, float]:
        if not self.parts:
            return {}
        u, y, p = (np.concatenate(x) for x in zip(*self.parts, strict=True))
        self.parts = []
        return {"auc": auc(y, p), "gauc": gauc(u, y, p), "logloss": logloss(y, p), "samples": float(len(y))}
