"""Optimiser, schedule and regularisation settings of one training run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from suan.utils.config import Config, require

SCHEDULES = ("plateau", "cosine", "constant")
L2_SCOPES = ("table", "batch")
# the valid metric that picks the best checkpoint, ends training and judges a plateau: (logged name, better is)
SELECTION = {"auc": ("valid_auc", "max"), "logloss": ("valid_logloss", "min")}


@dataclass(frozen=True, kw_only=True, slots=True)
class OptimConfig(Config):
    """Optimiser settings (AdamW; embeddings get an explicit L2 term instead of decay).

    Args:
        lr: learning rate of dense parameters. Default: 1e-3.
        embedding_lr: learning rate of embedding tables (0 = same as lr). Default: 0.
        attention_bias_lr: learning rate of the mixers' learned relative-position and time-gap bias tables
            (``suan.recipe.optim.ATTENTION_BIAS_TABLES``; 0 = same as lr, in the no-decay group). They start
            at zero and Adam moves a parameter about its lr per step, so at lr 1e-3 a run of a few hundred
            steps leaves them near zero (docs/RESULTS.md, the mixer family). Default: 0.
        weight_decay: decoupled AdamW decay of dense matrices (not of embeddings, norms, biases). Default: 1e-5.
        schedule: ``plateau`` (lr × ``plateau_factor`` after an epoch without a better ``select_on`` metric),
            ``cosine`` (linear warm-up, then cosine decay to ``min_lr_ratio`` × lr at the last step of the
            epoch budget) or ``constant`` (linear warm-up, then flat). Default: plateau.
        warmup_steps: linear warm-up steps (cosine, constant). Default: 0.
        warmup_fraction: linear warm-up as a share of the run's step budget instead (cosine, constant; not with
            ``warmup_steps``): the same shape for a sweep point of 80 steps and one of 2,500. Default: 0.0.
        plateau_factor: lr multiplier on a plateau of the ``select_on`` metric. Default: 0.1.
        select_on: the valid metric that picks the best checkpoint, ends training early and judges a plateau:
            ``auc`` (ranking, what a CTR model is deployed for) or ``logloss`` (what a scaling law fits: a
            small-data point selected on AUC can stop before its calibration settles). Default: auc.
        min_lr_ratio: the cosine schedule's final lr as a share of lr. Default: 0.0.
        embedding_l2: λ of ``λ/2 · Σ‖w‖²`` over the feature embedding tables, added to the mean batch
            loss (0 = off), at ``embedding_l2_ref_batch`` samples per step. Default: 0.02.
        embedding_l2_scope: ``table`` (every row of every table, every step) or ``batch`` (only the rows
            the batch looks up, each weighted by 1 / its chance of being in a batch, so the expected
            penalty per step equals ``table``'s at any batch size). Default: table.
        embedding_l2_ref_batch: 0 = λ is added at every step whatever the batch size (FuxiCTR's way: a
            quarter of the batch is four times the regularisation per epoch). > 0 = λ is the value at this
            many training samples per step: a step of b samples (all ranks together) uses
            λ · b / embedding_l2_ref_batch, so the regularisation per epoch does not depend on the batch
            size. Default: 1024 (λ 0.02 at batch 1024 is 0.005 per step at batch 256: the two measured
            alike on both real sets, docs/RESULTS.md).
    """

    lr: float = 1e-3
    embedding_lr: float = 0.0
    attention_bias_lr: float = 0.0
    weight_decay: float = 1e-5
    schedule: Literal["plateau", "cosine", "constant"] = "plateau"
    warmup_steps: int = 0
    warmup_fraction: float = 0.0
    plateau_factor: float = 0.1
    select_on: Literal["auc", "logloss"] = "auc"
    min_lr_ratio: float = 0.0
    embedding_l2: float = 0.02
    embedding_l2_scope: Literal["table", "batch"] = "table"
    embedding_l2_ref_batch: int = 1024

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps of a run of ``total_steps`` optimiser steps."""
        return self.warmup_steps or round(self.warmup_fraction * total_steps)

    def validate(self) -> None:
        require(self.lr > 0 and self.embedding_lr >= 0 and self.weight_decay >= 0, "bad optimiser values")
        require(self.attention_bias_lr >= 0, "attention_bias_lr must be >= 0 (0 = lr)")
        require(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        require(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}")
        require(0 <= self.warmup_fraction < 1, "warmup_fraction must be in [0, 1)")
        require(not (self.warmup_steps and self.warmup_fraction), "give warmup_steps or warmup_fraction, not both")
        require(self.schedule != "plateau" or (self.warmup_steps == 0 and self.warmup_fraction == 0),
                "warm-up needs schedule cosine or constant (plateau changes lr by epoch)")
        require(0 < self.plateau_factor < 1, "plateau_factor must be in (0, 1)")
        require(self.select_on in SELECTION, f"select_on must be one of {tuple(SELECTION)}")
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        require(self.embedding_l2 >= 0, "embedding_l2 must be >= 0")
        require(self.embedding_l2_scope in L2_SCOPES, f"embedding_l2_scope must be one of {L2_SCOPES}")
        require(self.embedding_l2_ref_batch >= 0, "embedding_l2_ref_batch must be >= 0 (0 = lambda per step)")

    @property
    def monitor(self) -> tuple[str, str]:
        """The logged valid metric that selects, stops and judges plateaus, and whether "max" or "min" is better."""
        return SELECTION[self.select_on]

    def l2_at(self, samples: int) -> float:
        """The embedding-L2 λ of one training step of ``samples`` rows (all ranks together)."""
        if self.embedding_l2_ref_batch == 0:
            return self.embedding_l2
        return self.embedding_l2 * samples / self.embedding_l2_ref_batch
