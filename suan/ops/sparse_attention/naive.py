"""Reference: the sparse pattern as a dense [B, L, L] mask, explicit matmul-softmax (at least fp32 math)."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import attention_mask, default_scale, positions, relative_bias, valid_tokens
from suan.ops.common.precision import at_least_fp32


def sparse_attention_mask(lengths: Tensor, num_targets: Tensor, seq_len: int, local_window: int, dilation: int,
                          max_attn_len: int = 0) -> Tensor:
    """The target-aware mask of ``attention_mask`` kept only at gaps in ``{1..k} ∪ {m·r : m ≥ 1}``, plus self.

    Args:
        lengths: [B] valid tokens.
        num_targets: [B] candidates at the end of the valid tokens.
        seq_len: L.
        local_window: k, every query sees the k previous positions.
        dilation: r, every query also sees every r-th earlier position (r = 1: dense causal).
        max_attn_len: if > 0, additionally only keys less than this many positions back. Default: 0.

    Returns:
        [B, L, L] bool, True = attend. Padded query rows see only themselves.
    """
    allowed = attention_mask(lengths, num_targets, seq_len, max_attn_len)  # [B, L, L]
    pos = positions(lengths, num_targets, seq_len)
    gap = pos.unsqueeze(2) - pos.unsqueeze(1)  # [B, L, L] query position - key position
    in_offsets = (gap >= 1) & ((gap <= local_window) | (gap % dilation == 0))
    diagonal = torch.eye(seq_len, dtype=torch.bool, device=lengths.device).unsqueeze(0)  # [1, L, L]
    return allowed & (in_offsets | diagonal)


def sparse_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                     pos_bias: Tensor | None, time_bias: Tensor | None, local_window: int, dilation: int,
                     max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    dtype = q.dtype
    q, k, v = at_least_fp32(q), at_least_fp32(k), at_least_fp32(v)
    scores = torch.einsum("bhid,bhjd->bhij", q, k) * default_scale(D)  # [B, H, L, L]
    bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)
    if bias is not None:
        scores = scores + at_least_fp32(bias).unsqueeze(1)
    mask = sparse_attention_mask(lengths, num_targets, L, local_window, dilation, max_attn_len).unsqueeze(1)
    probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # [B, H, L, L]
    out = torch.einsum("bhij,bhjd->bhid", probs, v)  # [B, H, L, D]
    return (out * valid_tokens(lengths, L).view(B, 1, L, 1)).to(dtype)
