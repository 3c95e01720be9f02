"""Vectorised path (CPU and ONNX export): the sink test and the redistribution as masked tensor sums."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.calibrated_attention.naive import MIN_OTHER_MASS
from suan.ops.common.masks import valid_tokens


def sink_mask(probs: Tensor, *, lengths: Tensor, num_targets: Tensor, tau: float) -> Tensor:
    """Sink keys per head: history keys with mean attention from history queries >= ``tau / n_hist``.

    Only history queries count, so candidates scored together cannot change each other's sinks.

    Args:
        probs: [B, H, L, L].
        lengths, num_targets: [B].
        tau: threshold in multiples of the uniform share.

    Returns:
        [B, H, L] bool.
    """
    B, _, L, _ = probs.shape
    n_hist = lengths - num_targets  # [B]
    history = valid_tokens(n_hist, L)  # [B, L]
    mass = (probs * history.view(B, 1, L, 1).to(probs.dtype)).sum(2)  # [B, H, L] summed over history queries
    mass = mass / n_hist.clamp(min=1).view(B, 1, 1).to(probs.dtype)
    return (mass * n_hist.view(B, 1, 1).to(probs.dtype) >= tau) & history.unsqueeze(1)


def calibrate(probs: Tensor, *, lengths: Tensor, num_targets: Tensor, beta: float, tau: float) -> Tensor:
    """See ``naive.calibrate``; rows with under ``MIN_OTHER_MASS`` outside the sinks are unchanged."""
    sink = sink_mask(probs, lengths=lengths, num_targets=num_targets, tau=tau).unsqueeze(2)  # [B, H, 1, L]
    zero = torch.zeros((), dtype=probs.dtype, device=probs.device)
    sink_mass = torch.where(sink, probs, zero).sum(-1, keepdim=True)  # [B, H, L, 1]
    other_mass = torch.where(sink, zero, probs).sum(-1, keepdim=True)  # [B, H, L, 1]
    movable = other_mass >= MIN_OTHER_MASS  # [B, H, L, 1]
    boost = 1 + (1 - beta) * sink_mass / torch.where(movable, other_mass, torch.ones_like(other_mass))
    scaled = probs * torch.where(sink, torch.full_like(boost, beta), boost)  # [B, H, L, L]
    return torch.where(movable, scaled, probs)


def attention_probs(logits: Tensor, *, mask: Tensor, lengths: Tensor, num_targets: Tensor, beta: float,
                    tau: float) -> Tensor:
    B, H, L, _ = logits.shape
    probs = torch.softmax(logits.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)  # [B, H, L, L]
    if beta != 1.0:
        probs = calibrate(probs, lengths=lengths, num_targets=num_targets, beta=beta, tau=tau)
    return probs * valid_tokens(lengths, L).view(B, 1, L, 1).to(probs.dtype)


def calibrated_attention(logits: Tensor, v: Tensor, *, mask: Tensor, lengths: Tensor, num_targets: Tensor,
                         beta: float, tau: float) -> Tensor:
    probs = attention_probs(logits, mask=mask, lengths=lengths, num_targets=num_targets, beta=beta, tau=tau)
    return torch.matmul(probs.to(v.dtype), v)  # [B, H, L, D]
