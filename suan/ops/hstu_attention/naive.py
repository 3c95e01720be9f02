"""Reference HSTU attention: dense scores, SiLU, mask to zero, divide by the row's valid length."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from suan.ops.common.masks import attention_mask, relative_bias, valid_tokens
from suan.ops.common.precision import at_least_fp32


def hstu_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                   pos_bias: Tensor | None, time_bias: Tensor | None, max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    dtype = q.dtype
    q, k, v = at_least_fp32(q), at_least_fp32(k), at_least_fp32(v)
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / D**0.5  # [B, H, L, L]
    bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)
    if bias is not None:
        scores = scores + bias.to(scores.dtype).unsqueeze(1)
    mask = attention_mask(lengths, num_targets, L, max_attn_len).unsqueeze(1)  # [B, 1, L, L]
    # normalise by history length + 1 (HSTU divides by a length); counting candidates would make a
    # candidate's score depend on how many others are scored with it
    norm = (lengths - num_targets + 1).to(q.dtype).view(B, 1, 1, 1)
    weights = F.silu(scores) * mask / norm
    out = torch.einsum("bhij,bhjd->bhid", weights, v)  # [B, H, L, D]
    return (out * valid_tokens(lengths, L).view(B, 1, L, 1)).to(dtype)
