"""Fast CPU path and ONNX export path: gather ``b`` local token slots and ``ceil(L / b)`` block summaries.

Block means come from one pad + reshape (the block count is a closed form of the symbolic L, so an
exported graph keeps L dynamic). Cost O(B·H·L·(b + L/b)·D): O(L^1.5) for ``b ≈ sqrt(L)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from suan.ops.common.masks import positions, valid_tokens
from suan.ops.common.slots import block_means, gathered_attention, local_slots, pair_bias, summary_slots, take


def combiner_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
                       timestamps: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None, block: int,
                       max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    pos = positions(lengths, num_targets, L)  # [B, L]
    offsets = torch.arange(block, device=q.device)  # [b], slot 0 = self
    key, valid = local_slots(pos, lengths, offsets, pos % block, max_attn_len)  # [B, L, b]
    bias = pair_bias(offsets, timestamps.unsqueeze(-1) - take(timestamps, key), pos_bias, time_bias)
    k_sum, v_sum = block_means(k, block), block_means(v, block)  # [B, H, nb, D]
    nb = k_sum.shape[2]
    c_valid, c_bias = summary_slots(pos, lengths, timestamps, block, nb, max_attn_len, pos_bias, time_bias)
    c_index = (L + torch.arange(nb, device=q.device)).expand(B, L, -1)  # [B, L, nb] rows after the tokens
    index = torch.cat([key, c_index], dim=-1)  # [B, L, b + nb]
    bias = torch.zeros(valid.shape, device=q.device) if bias is None else bias
    bias = torch.cat([bias, c_bias + math.log(block)], dim=-1)  # [B, L, b + nb]
    out = gathered_attention(q, torch.cat([k, k_sum], 2), torch.cat([v, v_sum], 2), index.unsqueeze(1),
                             torch.cat([valid, c_valid], dim=-1).unsqueeze(1), bias.unsqueeze(1))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
