"""Lightning training system for CTR models: owns loss, optimiser, metrics; the model is injected."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from suan.utils.config import Config, require
from suan.utils.metrics import auc, gauc, logloss


@dataclass(frozen=True, kw_only=True, slots=True)
class OptimConfig(Config):
    """Optimiser settings.

    Args:
        lr: AdamW learning rate of dense parameters. Default: 1e-3.
        embedding_lr: learning rate of embedding tables (0 = same as lr). Default: 0.
        weight_decay: AdamW weight decay of dense matrices (not of embeddings, norms, biases). Default: 1e-5.
        warmup_steps: linear warm-up steps. Default: 0.
    """

    lr: float = 1e-3
    embedding_lr: float = 0.0
    weight_decay: float = 1e-5
    warmup_steps: int = 0

    def validate(self) -> None:
        require(self.lr > 0 and self.embedding_lr >= 0 and self.weight_decay >= 0, "bad optimiser values")
        require(self.warmup_steps >= 0, "warmup_steps must be >= 0")


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Embeddings (own lr, no decay), dense matrices (decay), vectors (no decay)."""
    emb_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    emb, decay, no_decay = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (emb if id(p) in emb_ids else decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": emb, "lr": cfg.embedding_lr or cfg.lr, "weight_decay": 0.0, "name": "embedding"},
        {"params": decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "dense"},
        {"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0, "name": "dense_no_decay"},
    ]


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


class CTRSystem(L.LightningModule):
    """Binary cross-entropy training of an injected CTR model.

    Args:
        model: a ``suan.models`` CTR model (returns logits).
        optim: :class:`OptimConfig`.
    """

    def __init__(self, model: nn.Module, optim: OptimConfig) -> None:
        super().__init__()
        self.model, self.optim = model, optim
        self.buffers = {"valid": EvalBuffer(), "test": EvalBuffer()}
        self.last_metrics: dict[str, float] = {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch)
        loss = F.binary_cross_entropy_with_logits(logits, batch["label"])
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(logits))
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], split: str) -> None:
        # metrics on the data's own distribution: calibration for sampled negatives is for serving
        self.buffers[split].add(batch["user_key"], batch["label"], torch.sigmoid(self.model(batch)))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "valid")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_eval(self, split: str) -> None:
        metrics = self.buffers[split].compute()
        for name, value in metrics.items():
            # every rank evaluates the whole split, so no cross-rank reduction is needed
            self.log(f"{split}_{name}", value, prog_bar=name == "auc", sync_dist=False, rank_zero_only=False)
            self.last_metrics[f"{split}_{name}"] = value

    def on_validation_epoch_end(self) -> None:
        self._log_eval("valid")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def configure_optimizers(self):
        opt = torch.optim.AdamW(param_groups(self.model, self.optim), lr=self.optim.lr)
        if not self.optim.warmup_steps:
            return opt
        warmup = self.optim.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
