"""Fast CPU path and ONNX export path: chunk tables by ``scatter_add``, chunk scores, ``torch.topk`` with a
constant m, a gather of the ``c`` local slots and the ``m·c`` tokens of the chosen chunks.

The chunk table has L rows (the most chunks a row can have) plus one sink row for non-history tokens;
chunks are contiguous and in order, so a chunk's first position is the exclusive cumsum of the sizes.
Cost O(B·H·L·(G + (m + 1)·c)·D) with G = L table rows (the chunk scoring is the paper's linear-in-chunks
step; the attention itself is O(L·(m + 1)·c)). No sort, no searchsorted, no loop over L.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import default_scale, positions, valid_tokens
from suan.ops.common.slots import gathered_attention, local_slots, pair_bias, take, top_k_units
from suan.ops.dhsa_attention.chunks import chunk_ids


def _chunk_table(k: Tensor, key_chunk: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Size, first position and length-normalised key sum ``sum(k) / sqrt(size)`` of every chunk.

    Returns:
        ([B, L] int64, [B, L] int64, [B, H, L, D]); rows past the last chunk have size 0.
    """
    B, H, L, D = k.shape
    row = torch.where(key_chunk >= 0, key_chunk, L)  # [B, L], non-history tokens to the sink row L
    size = torch.zeros(B, L + 1, dtype=torch.long, device=k.device).scatter_add(1, row, torch.ones_like(row))
    size = size[:, :L]
    start = size.cumsum(dim=1) - size
    sums = torch.zeros(B, H, L + 1, D, dtype=k.dtype, device=k.device)
    sums = sums.scatter_add(2, row.view(B, 1, L, 1).expand(B, H, L, D), k)[:, :, :L]  # [B, H, L, D]
    return size, start, sums / size.clamp(min=1).to(k.dtype).sqrt().view(B, 1, L, 1)


def dhsa_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                   boundaries: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None, chunk: int, top_k: int,
                   max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    pos = positions(lengths, num_targets, L)  # [B, L]
    key_chunk, query_chunk = chunk_ids(boundaries, lengths, num_targets, chunk)  # [B, L]
    size, start, reps = _chunk_table(k, key_chunk)
    g = torch.arange(L, device=q.device)  # [G]
    p = pos.view(B, 1, L, 1)
    eligible = (g < query_chunk.unsqueeze(-1)) & (size > 0).unsqueeze(1)  # [B, L, G] complete earlier chunks
    eligible = eligible & valid_tokens(lengths, L).unsqueeze(-1)
    if max_attn_len > 0:
        eligible = eligible & (pos.unsqueeze(-1) - (start + size - 1).unsqueeze(1) < max_attn_len)
    scores = torch.matmul(q, reps.transpose(-1, -2)) * default_scale(D)  # [B, H, L, G]
    chunks, chunk_valid = top_k_units(scores, eligible.unsqueeze(1), top_k)  # [B, H, L, m]
    o = torch.arange(chunk, device=q.device)
    first = take(start, chunks.flatten(1)).view(chunks.shape).unsqueeze(-1)  # [B, H, L, m, 1]
    count = take(size, chunks.flatten(1)).view(chunks.shape).unsqueeze(-1)
    far = (first + o).flatten(-2).clamp(max=L - 1)  # [B, H, L, m·c] tokens of the chosen chunks
    far_valid = (chunk_valid.unsqueeze(-1) & (o < count)).flatten(-2)
    if max_attn_len > 0:
        far_valid = far_valid & (p - far < max_attn_len)
    near, near_valid = local_slots(pos, lengths, o, torch.full_like(pos, chunk - 1), max_attn_len)  # [B, L, c]
    near_valid = near_valid & ((take(key_chunk, near) == query_chunk.unsqueeze(-1)) | (o == 0))
    key = torch.cat([near.unsqueeze(1).expand(-1, H, -1, -1), far], dim=-1)  # [B, H, L, c + m·c]
    valid = torch.cat([near_valid.unsqueeze(1).expand(-1, H, -1, -1), far_valid], dim=-1)
    gap = p - take(pos, key.flatten(1)).view(key.shape)
    dt = timestamps.view(B, 1, L, 1) - take(timestamps, key.flatten(1)).view(key.shape)
    out = gathered_attention(q, k, v, key, valid, pair_bias(gap, dt, pos_bias, time_bias))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
