"""Reference: explicit scores, dense mask, softmax, weighted sum (at least fp32 math)."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import attention_mask, default_scale, relative_bias, valid_tokens
from suan.ops.common.precision import at_least_fp32


def rel_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                  pos_bias: Tensor | None, time_bias: Tensor | None, max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    dtype = q.dtype
    q, k, v = at_least_fp32(q), at_least_fp32(k), at_least_fp32(v)
    scores = torch.einsum("bhid,bhjd->bhij", q, k) * default_scale(D)  # [B, H, L, L]
    bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)
    if bias is not None:
        scores = scores + at_least_fp32(bias).unsqueeze(1)
    mask = attention_mask(lengths, num_targets, L, max_attn_len).unsqueeze(1)  # [B, 1, L, L]
    probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    out = torch.einsum("bhij,bhjd->bhid", probs, v)  # [B, H, L, D]
    return (out * valid_tokens(lengths, L).view(B, 1, L, 1)).to(dtype)
