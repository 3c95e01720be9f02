"""Lightning training system for CTR models: owns loss, optimiser, metrics; the model is injected."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from suan.recipe.config import OptimConfig
from suan.recipe.evaluation import EvalBuffer
from suan.recipe.optim import build_optimizer, param_groups, run_steps
from suan.recipe.regularization import embedding_penalty


class CTRSystem(L.LightningModule):
    """Binary cross-entropy plus the embedding L2 term, training an injected CTR model.

    Args:
        model: a ``suan.models`` CTR model (returns logits).
        optim: :class:`OptimConfig`.
        l2_weights: vocabulary → per-id weights of the ``batch`` L2 scope (``suan.recipe.touch_weights``).
            Default: None (every looked-up row weighs 1).
    """

    def __init__(self, model: nn.Module, optim: OptimConfig, l2_weights: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.model, self.optim, self.l2_weights = model, optim, l2_weights
        self.buffers = {"valid": EvalBuffer(), "test": EvalBuffer()}
        self.last_metrics: dict[str, float] = {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch)
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"])
        ranks = self._trainer.world_size if self._trainer is not None else 1
        l2 = embedding_penalty(self.model.embed, batch, self.optim.l2_at(logits.numel() * ranks),
                               self.optim.embedding_l2_scope, self.l2_weights)
        B = len(logits)
        self.log("train_loss", bce, on_step=True, on_epoch=True, prog_bar=True, batch_size=B)
        self.log("train_l2", l2, on_step=False, on_epoch=True, batch_size=B)
        return bce + l2

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
        return build_optimizer(param_groups(self.model, self.optim), self.optim, run_steps(self.trainer))
