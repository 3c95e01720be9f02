"""Reference: dense chunk membership, dense chunk scores, selection by rank, dense [B, H, L, L] mask (at least fp32)."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import attention_mask, default_scale, positions, relative_bias, valid_tokens
from suan.ops.common.precision import at_least_fp32, working_dtype
from suan.ops.common.slots import dense_attention
from suan.ops.dhsa_attention.chunks import chunk_ids


def dhsa_mask(scores: Tensor, key_chunk: Tensor, query_chunk: Tensor, lengths: Tensor, num_targets: Tensor,
              top_k: int, max_attn_len: int = 0) -> Tensor:
    """Own chunk so far + self + every token of the ``top_k`` best-scoring complete earlier chunks.

    Args:
        scores: [B, H, L, G] chunk scores (chunk g = ids g). key_chunk, query_chunk: [B, L] from ``chunk_ids``.
        lengths, num_targets: [B]. top_k: m.
        max_attn_len: if > 0, only keys less than this many positions back, and only chunks with such a
            key are searched. Default: 0.

    Returns:
        [B, H, L, L] bool, True = attend. Padded query rows see only themselves.
    """
    B, H, L, G = scores.shape
    allowed = attention_mask(lengths, num_targets, L, max_attn_len).unsqueeze(1)  # [B, 1, L, L] causal, window
    member = key_chunk.unsqueeze(1) == torch.arange(G, device=scores.device).view(1, G, 1)  # [B, G, L]
    pos = positions(lengths, num_targets, L)
    last = torch.where(member, pos.unsqueeze(1), -1).amax(dim=-1)  # [B, G] last position, -1 for no chunk
    g = torch.arange(G, device=scores.device)
    eligible = (g < query_chunk.unsqueeze(-1)) & (last.unsqueeze(1) >= 0)  # [B, L, G]
    if max_attn_len > 0:
        eligible = eligible & (pos.unsqueeze(-1) - last.unsqueeze(1) < max_attn_len)
    eligible = eligible.unsqueeze(1)  # [B, 1, L, G]
    masked = scores.masked_fill(~eligible, float("-inf"))
    better = (masked.unsqueeze(-1) > masked.unsqueeze(-2)).sum(-2)  # [B, H, L, G] eligible chunks scoring higher
    chosen = (eligible & (better < top_k)).float()
    far = torch.einsum("bhlg,bgj->bhlj", chosen, member.float()) > 0  # [B, H, L, L]
    near = (key_chunk.unsqueeze(1) == query_chunk.unsqueeze(2)).unsqueeze(1)  # [B, 1, L, L] same chunk
    diagonal = torch.eye(L, dtype=torch.bool, device=scores.device)
    return (allowed & (far | near)) | diagonal


def dhsa_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                   boundaries: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None, chunk: int, top_k: int,
                   max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    key_chunk, query_chunk = chunk_ids(boundaries, lengths, num_targets, chunk)
    member = key_chunk.unsqueeze(1) == torch.arange(L, device=q.device).view(1, L, 1)  # [B, G = L, L]
    member = member.to(working_dtype(k))
    size = member.sum(-1).clamp(min=1.0)  # [B, G]
    reps = torch.einsum("bgj,bhjd->bhgd", member, at_least_fp32(k)) / size.sqrt().view(B, 1, L, 1)  # [B, H, G, D]
    scores = torch.einsum("bhld,bhgd->bhlg", at_least_fp32(q), reps) * default_scale(D)  # [B, H, L, G]
    mask = dhsa_mask(scores, key_chunk, query_chunk, lengths, num_targets, top_k, max_attn_len)
    bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)
    out = dense_attention(q, k, v, mask, None if bias is None else bias.unsqueeze(1))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
