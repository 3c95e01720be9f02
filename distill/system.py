"""Distillation system: a teacher and a student injected as modules, trained on the same batches.

Online mode trains both jointly (the teacher learns from labels, the student from labels and the
teacher's softened predictions); offline mode freezes a saved teacher. The student is ``self.model``
so the training pipeline saves and evaluates it like any other model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch
from torch import nn

from distill.losses import online_distillation_loss
from suan.recipe.config import OptimConfig
from suan.recipe.evaluation import EvalBuffer
from suan.recipe.optim import build_optimizer, param_groups, run_steps
from suan.recipe.regularization import embedding_penalty
from suan.utils.config import Config, require


@dataclass(frozen=True, kw_only=True, slots=True)
class DistillConfig(Config):
    """Distillation settings.

    Args:
        mode: ``online`` (teacher and student trained jointly) or ``offline`` (frozen teacher).
        temperature: t of the softened predictions. Default: 2.0.
        weight: λ of the soft term; negative means t². Default: -1.
    """

    mode: Literal["online", "offline"] = "online"
    temperature: float = 2.0
    weight: float = -1.0

    def validate(self) -> None:
        require(self.mode in ("online", "offline"), "mode must be online or offline")
        require(self.temperature > 0, "temperature must be > 0")

    @property
    def lam(self) -> float:
        return self.weight if self.weight >= 0 else self.temperature**2


class DistillSystem(L.LightningModule):
    """Teacher + student; validation and test report both (``valid_auc`` is the student's).

    Args:
        student: the model being distilled into (``self.model``).
        teacher: the high-grade model.
        optim: optimiser settings (shared by both in online mode).
        cfg: :class:`DistillConfig`.
        l2_weights: per-id weights of the ``batch`` embedding-L2 scope, as in ``CTRSystem``. Default: None.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, optim: OptimConfig, cfg: DistillConfig,
                 l2_weights: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.model, self.teacher, self.optim, self.cfg = student, teacher, optim, cfg
        self.l2_weights = l2_weights
        if cfg.mode == "offline":
            self.teacher.requires_grad_(False)
        self.buffers = {f"{s}_{who}": EvalBuffer() for s in ("valid", "test") for who in ("student", "teacher")}
        self.last_metrics: dict[str, float] = {}

    def train(self, mode: bool = True) -> DistillSystem:
        super().train(mode)
        if self.cfg.mode == "offline":
            self.teacher.eval()  # a frozen teacher keeps its BatchNorm statistics, whatever Lightning switches
        return self

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        z_s = self.model(batch)
        z_t = self.teacher(batch)
        parts = online_distillation_loss(z_s, z_t, batch["label"], self.cfg.temperature, self.cfg.lam,
                                         train_teacher=self.cfg.mode == "online")
        trained = (self.model, self.teacher) if self.cfg.mode == "online" else (self.model,)
        ranks = self._trainer.world_size if self._trainer is not None else 1
        l2_coef = self.optim.l2_at(z_s.numel() * ranks)  # not cfg.lam, the soft term's weight
        l2 = sum(embedding_penalty(m.embed, batch, l2_coef, self.optim.embedding_l2_scope, self.l2_weights)
                 for m in trained)
        B = len(z_s)
        self.log("train_loss", parts["loss"], on_step=True, on_epoch=True, prog_bar=True, batch_size=B)
        for name in ("student_bce", "teacher_bce", "soft"):
            self.log(f"train_{name}", parts[name], on_step=False, on_epoch=True, batch_size=B)
        self.log("train_l2", l2, on_step=False, on_epoch=True, batch_size=B)
        return parts["loss"] + l2

    def _eval_step(self, batch: dict[str, torch.Tensor], split: str) -> None:
        for who, model in (("student", self.model), ("teacher", self.teacher)):
            self.buffers[f"{split}_{who}"].add(batch["user_key"], batch["label"], torch.sigmoid(model(batch)))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "valid")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_eval(self, split: str) -> None:
        for who in ("student", "teacher"):
            for name, value in self.buffers[f"{split}_{who}"].compute().items():
                # the student's metrics carry the plain names so checkpointing and reports treat it as the model
                key = f"{split}_{name}" if who == "student" else f"{split}_teacher_{name}"
                self.log(key, value, prog_bar=key == f"{split}_auc", sync_dist=False, rank_zero_only=False)
                self.last_metrics[key] = value

    def on_validation_epoch_end(self) -> None:
        self._log_eval("valid")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def configure_optimizers(self):
        groups = param_groups(self.model, self.optim)
        if self.cfg.mode == "online":
            groups += param_groups(self.teacher, self.optim)
        return build_optimizer(groups, self.optim, run_steps(self.trainer))
