"""Parallel path (fast CPU path and ONNX export path): cumsums against a constant global max.

Capped scores lie in ``(-SCORE_CAP, SCORE_CAP)``, so ``e = exp(s - SCORE_CAP)`` lies in ``(e^-60, 1]``:
no overflow, no underflow to zero, and ``u_i = cumsum(e)_i`` and ``w_i = cumsum(e v)_i`` are the
recurrence's ``u, w`` up to the common factor ``exp(m_i - SCORE_CAP)``, which cancels in ``w / u``.
Only history tokens enter the sums; a candidate adds its own term to the full-history sums.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.aaren.naive import SCORE_CAP, soft_cap
from suan.ops.common.masks import valid_tokens
from suan.ops.common.precision import at_least_fp32


def aaren(s: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor) -> Tensor:
    L = s.shape[-1]
    valid = valid_tokens(lengths, L).unsqueeze(1)  # [B, 1, L]
    hist = valid_tokens(lengths - num_targets, L).unsqueeze(1)
    cand = (valid & ~hist).to(torch.float32)
    e = torch.exp(soft_cap(at_least_fp32(s)) - SCORE_CAP)  # [B, H, L]
    e_hist = e * hist.to(torch.float32)
    u = torch.cumsum(e_hist, dim=-1)  # [B, H, L]
    w = torch.cumsum(e_hist.unsqueeze(-1) * at_least_fp32(v), dim=-2)  # [B, H, L, D]
    e_own = e * cand
    num = w + e_own.unsqueeze(-1) * at_least_fp32(v)
    # padded rows of an empty sequence have u = 0: divide by 1 there (the output is zeroed anyway)
    den = torch.where(valid, u + e_own, torch.ones_like(u))
    out = num / den.unsqueeze(-1) * valid.unsqueeze(-1).to(torch.float32)
    return out.to(v.dtype)
