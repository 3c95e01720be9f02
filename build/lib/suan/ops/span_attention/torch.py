"""Fast CPU path and ONNX export path: span scores against pooled summaries, ``torch.topk`` with a constant k,
a gather of the ``s`` local slots and the ``k·s`` tokens of the chosen spans.

The span axis is padded with k never-chosen entries (``slots.top_k_units``), so ``topk`` always has k to
take whatever the (symbolic) L. Cost O(B·H·L·(L/s + (k + 1)·s)·D): O(L^1.5) for ``s ≈ k ≈ sqrt(L)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import default_scale, positions, valid_tokens
from suan.ops.common.slots import block_means, gathered_attention, local_slots, pair_bias, take, top_k_units


def span_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                   pos_bias: Tensor | None, time_bias: Tensor | None, span: int, top_k: int,
                   max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    pos = positions(lengths, num_targets, L)  # [B, L]
    summaries = block_means(k, span)  # [B, H, nb, D]
    c = torch.arange(summaries.shape[2], device=q.device)  # [nb]
    p = pos.view(B, 1, L, 1)
    eligible = (c < p // span) & valid_tokens(lengths, L).view(B, 1, L, 1)  # [B, 1, L, nb]
    if max_attn_len > 0:
        eligible = eligible & (p - ((c + 1) * span - 1) < max_attn_len)
    scores = torch.matmul(q, summaries.transpose(-1, -2)) * default_scale(D)  # [B, H, L, nb]
    spans, span_valid = top_k_units(scores, eligible, top_k)  # [B, H, L, k]
    o = torch.arange(span, device=q.device)
    # tokens of the chosen spans (a dummy pick of a short row may point past L: clamped, it is masked)
    far = (spans.unsqueeze(-1) * span + o).flatten(-2).clamp(max=L - 1)  # [B, H, L, k·s]
    far_valid = span_valid.unsqueeze(-1).expand(-1, -1, -1, -1, span).flatten(-2)
    if max_attn_len > 0:
        far_valid = far_valid & (p - far < max_attn_len)
    offsets = torch.arange(span, device=q.device)  # [s], slot 0 = self
    near, near_valid = local_slots(pos, lengths, offsets, pos % span, max_attn_len)  # [B, L, s]
    key = torch.cat([near.unsqueeze(1).expand(-1, H, -1, -1), far], dim=-1)  # [B, H, L, s + k·s]
    valid = torch.cat([near_valid.unsqueeze(1).expand(-1, H, -1, -1), far_valid], dim=-1)
    gap = p - take(pos, key.flatten(1)).view(key.shape)
    dt = timestamps.view(B, 1, L, 1) - take(timestamps, key.flatten(1)).view(key.shape)
    out = gathered_attention(q, k, v, key, valid, pair_bias(gap, dt, pos_bias, time_bias))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
