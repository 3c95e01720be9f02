"""Reference: masked softmax in fp32, then sinks found and damped head by head with explicit Python loops."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import valid_tokens
from suan.ops.common.precision import at_least_fp32

# A row whose attention outside the sinks is below this keeps its attention: moving the sink mass onto
# keys with (almost) none would multiply near-zero probabilities by up to 1 / MIN_OTHER_MASS (inf·0 = NaN
# once the mass underflows), i.e. amplify noise instead of redistributing attention.
MIN_OTHER_MASS = 1e-6


def sink_keys(probs: Tensor, n_hist: int, tau: float) -> list[int]:
    """History keys whose mean attention from the history queries is at least ``tau / n_hist``.

    Args:
        probs: [L, L] one head of one row (queries x keys).
        n_hist: history tokens of the row.
        tau: threshold in multiples of the uniform share.

    Returns:
        the sink key indices (empty without history).
    """
    if n_hist == 0:
        return []
    mass = probs[:n_hist, :n_hist].detach().sum(0) / n_hist  # [n_hist]
    return [j for j in range(n_hist) if bool(mass[j] * n_hist >= tau)]


def calibrate(probs: Tensor, *, lengths: Tensor, num_targets: Tensor, beta: float, tau: float) -> Tensor:
    """Scale attention to sink keys by ``beta`` and give the removed mass to the other keys pro rata."""
    out = probs.clone()
    B, H = probs.shape[:2]
    for b in range(B):
        n_hist, n_valid = int(lengths[b] - num_targets[b]), int(lengths[b])
        for h in range(H):
            sinks = sink_keys(probs[b, h], n_hist, tau)
            if not sinks:
                continue
            is_sink = torch.zeros(probs.shape[-1], dtype=torch.bool, device=probs.device)
            is_sink[sinks] = True
            rows = probs[b, h, :n_valid]  # [n_valid, L]
            sink_mass = rows[:, is_sink].sum(-1, keepdim=True)  # [n_valid, 1]
            other_mass = rows[:, ~is_sink].sum(-1, keepdim=True)  # [n_valid, 1]
            # a row with (almost) nothing outside the sinks keeps its attention: nowhere to move the mass
            movable = other_mass >= MIN_OTHER_MASS
            safe = torch.where(movable, other_mass, torch.ones_like(other_mass))
            moved = torch.where(is_sink, beta * rows, rows * (1 + (1 - beta) * sink_mass / safe))
            out[b, h, :n_valid] = torch.where(movable, moved, rows)
    return out


def attention_probs(logits: Tensor, *, mask: Tensor, lengths: Tensor, num_targets: Tensor, beta: float,
                    tau: float) -> Tensor:
    B, H, L, _ = logits.shape
    probs = torch.softmax(at_least_fp32(logits).masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)  # [B, H, L, L]
    if beta != 1.0:
        probs = calibrate(probs, lengths=lengths, num_targets=num_targets, beta=beta, tau=tau)
    return probs * valid_tokens(lengths, L).view(B, 1, L, 1)


def calibrated_attention(logits: Tensor, v: Tensor, *, mask: Tensor, lengths: Tensor, num_targets: Tensor,
                         beta: float, tau: float) -> Tensor:
    probs = attention_probs(logits, mask=mask, lengths=lengths, num_targets=num_targets, beta=beta, tau=tau)
    return torch.einsum("bhij,bhjd->bhid", probs, at_least_fp32(v)).to(v.dtype)  # [B, H, L, D]
