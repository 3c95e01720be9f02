"""AdamW over three parameter groups and the learning-rate schedule, in the dict form Lightning takes."""

from __future__ import annotations

import math

import torch
from torch import nn

from suan.recipe.config import OptimConfig

# a plateau is a gain below this in the selection metric (valid AUC or logloss: both are noisy in the 4th decimal
# on ~10^4-row splits)
PLATEAU_THRESHOLD = 1e-4

# the mixers' learned bias tables, indexed by relative position or time-gap bucket and added to attention logits
ATTENTION_BIAS_TABLES = ("pos_bias", "time_bias")


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Embeddings (own lr, no decay: the L2 term regularises them), dense matrices (decay), vectors (no decay);
    with ``attention_bias_lr`` set, the attention bias tables in a group of their own (no decay). Without it
    they stay in the no-decay group, so a run's optimiser state keeps the three groups it always had."""
    emb_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    emb, decay, no_decay, bias_tables = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if cfg.attention_bias_lr and name.rsplit(".", 1)[-1] in ATTENTION_BIAS_TABLES:
            bias_tables.append(p)
            continue
        (emb if id(p) in emb_ids else decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": emb, "lr": cfg.embedding_lr or cfg.lr, "weight_decay": 0.0, "name": "embedding"},
        {"params": decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "dense"},
        {"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0, "name": "dense_no_decay"},
    ]
    if cfg.attention_bias_lr:
        groups.append({"params": bias_tables, "lr": cfg.attention_bias_lr, "weight_decay": 0.0,
                       "name": "attention_bias"})
    return groups


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """The lr multiplier at optimiser step ``step`` of the cosine and constant schedules.

    Args:
        step: steps taken so far (0 = the first update).
        cfg: the schedule's settings.
        total_steps: the run's step budget (cosine reaches ``min_lr_ratio`` there and stays).
    """
    warmup = cfg.warmup(total_steps)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    span = max(total_steps - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(groups: list[dict], cfg: OptimConfig, total_steps: int) -> dict:
    """AdamW over ``groups`` plus the schedule, as a Lightning ``configure_optimizers`` answer.

    Args:
        groups: parameter groups (:func:`param_groups` of one or more models); empty groups are dropped.
        cfg: optimiser settings.
        total_steps: optimiser steps of the whole run (the cosine horizon).
    """
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
    if cfg.schedule == "plateau":
        monitor, mode = cfg.monitor
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=cfg.plateau_factor, patience=0,
                                                           threshold=PLATEAU_THRESHOLD, threshold_mode="abs")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": monitor, "interval": "epoch"}}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, cfg, total_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def step_budget(max_steps: int, max_epochs: int, steps_per_epoch: int) -> int:
    """Optimiser steps a run may take: ``max_steps`` when set (> 0), else epochs × steps per epoch."""
    by_epochs = max_epochs * max(steps_per_epoch, 1)
    return min(max_steps, by_epochs) if max_steps > 0 else by_epochs


def run_steps(trainer) -> int:
    """The run's optimiser-step budget (the cosine horizon), from a Lightning trainer and its data module.

    Duck-typed (``max_steps``, ``max_epochs``, ``world_size``, ``datamodule.steps_per_epoch``), so the recipe
    imports no Lightning; a data module without ``steps_per_epoch`` counts one step per epoch.
    """
    dm = getattr(trainer, "datamodule", None)
    per_epoch = dm.steps_per_epoch(trainer.world_size) if dm is not None and hasattr(dm, "steps_per_epoch") else 1
    return step_budget(trainer.max_steps, trainer.max_epochs or 1, per_epoch)
