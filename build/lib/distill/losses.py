"""Distillation losses: pure functions of logits and labels (tested against their definitions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_bce(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``BCE(sigmoid(z_s / t), sigmoid(z_t / t))`` with the teacher detached.

    Args:
        student_logits, teacher_logits: [B] or [B, C].
        temperature: t > 0.

    Returns:
        scalar mean over elements.
    """
    target = torch.sigmoid(teacher_logits.detach() / temperature)
    return F.binary_cross_entropy_with_logits(student_logits / temperature, target)


def online_distillation_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float,
                             weight: float, train_teacher: bool = True) -> dict[str, Tensor]:
    """``L = BCE(z_s, y) + BCE(z_t, y) + λ · soft_bce(z_s, z_t, t)``.

    Args:
        student_logits, teacher_logits, labels: [B] (or [B, C]).
        temperature: t.
        weight: λ (``t²`` keeps the soft term's gradient scale independent of t).
        train_teacher: include the teacher's own BCE (online); False for a frozen teacher (offline).

    Returns:
        ``loss`` (what is minimised) and its parts ``student_bce``, ``teacher_bce``, ``soft``.
    """
    student_bce = F.binary_cross_entropy_with_logits(student_logits, labels)
    teacher_bce = F.binary_cross_entropy_with_logits(teacher_logits, labels)
    soft = soft_bce(student_logits, teacher_logits, temperature)
    loss = student_bce + weight * soft + (teacher_bce if train_teacher else 0.0)
    return {"loss": loss, "student_bce": student_bce, "teacher_bce": teacher_bce.detach(), "soft": soft.detach()}
