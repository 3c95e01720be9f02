"""Reference: the block + halo pattern as a dense [B, L, L] mask, explicit matmul-softmax (at least fp32 math)."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import attention_mask, positions, relative_bias, valid_tokens
from suan.ops.common.slots import dense_attention


def halo_mask(lengths: Tensor, num_targets: Tensor, seq_len: int, block: int, halo: int,
              max_attn_len: int = 0) -> Tensor:
    """``attention_mask`` kept at gaps ``p - j <= p % b + h`` (the query's block so far plus the halo).

    Args:
        lengths: [B]. num_targets: [B]. seq_len: L. block: b. halo: h.
        max_attn_len: if > 0, additionally only gaps below it. Default: 0.

    Returns:
        [B, L, L] bool, True = attend. Padded query rows see only themselves.
    """
    allowed = attention_mask(lengths, num_targets, seq_len, max_attn_len)  # [B, L, L]
    pos = positions(lengths, num_targets, seq_len)
    gap = pos.unsqueeze(2) - pos.unsqueeze(1)  # [B, L, L] query position - key position
    reach = (pos % block + halo).unsqueeze(2)  # [B, L, 1]
    diagonal = torch.eye(seq_len, dtype=torch.bool, device=lengths.device).unsqueeze(0)  # [1, L, L]
    return allowed & ((gap <= reach) | diagonal)


def halo_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                   pos_bias: Tensor | None, time_bias: Tensor | None, block: int, halo: int,
                   max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)
    mask = halo_mask(lengths, num_targets, L, block, halo, max_attn_len).unsqueeze(1)  # [B, 1, L, L]
    out = dense_attention(q, k, v, mask, None if bias is None else bias.unsqueeze(1))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
