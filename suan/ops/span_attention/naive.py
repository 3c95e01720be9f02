"""Reference: dense span scores, selection by rank, the chosen pattern as a dense [B, H, L, L] mask (at least fp32)."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import default_scale, positions, relative_bias, valid_tokens
from suan.ops.common.precision import at_least_fp32
from suan.ops.common.slots import dense_attention, dense_block_means
from suan.ops.halo_attention import halo_mask


def eligible_spans(lengths: Tensor, num_targets: Tensor, seq_len: int, span: int,
                   max_attn_len: int = 0) -> Tensor:
    """Spans a query may search: wholly before its own span, and (window) with a key in reach.

    Returns:
        [B, L, nb] bool, ``nb = ceil(L / s)``; padded queries search nothing.
    """
    pos = positions(lengths, num_targets, seq_len).unsqueeze(-1)  # [B, L, 1]
    c = torch.arange(-(-seq_len // span), device=lengths.device)  # [nb]
    out = (c < pos // span) & valid_tokens(lengths, seq_len).unsqueeze(-1)
    if max_attn_len > 0:
        out = out & (pos - ((c + 1) * span - 1) < max_attn_len)
    return out


def span_mask(scores: Tensor, lengths: Tensor, num_targets: Tensor, span: int, top_k: int,
              max_attn_len: int = 0) -> Tensor:
    """Own span so far + self + every token of the ``top_k`` best-scoring eligible spans.

    Args:
        scores: [B, H, L, nb] span scores. lengths, num_targets: [B]. span: s. top_k: k.
        max_attn_len: if > 0, additionally only keys less than this many positions back. Default: 0.

    Returns:
        [B, H, L, L] bool, True = attend. Padded query rows see only themselves.
    """
    B, H, L, nb = scores.shape
    eligible = eligible_spans(lengths, num_targets, L, span, max_attn_len).unsqueeze(1)  # [B, 1, L, nb]
    masked = scores.masked_fill(~eligible, float("-inf"))
    better = (masked.unsqueeze(-1) > masked.unsqueeze(-2)).sum(-2)  # [B, H, L, nb] eligible spans scoring higher
    chosen = eligible & (better < top_k)
    j = torch.arange(L, device=scores.device)
    tokens = chosen[..., j // span]  # [B, H, L, L] the span of every key
    pos = positions(lengths, num_targets, L).view(B, 1, L, 1)
    if max_attn_len > 0:
        tokens = tokens & (pos - j < max_attn_len)
    return tokens | halo_mask(lengths, num_targets, L, span, 0, max_attn_len).unsqueeze(1)


def span_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                   pos_bias: Tensor | None, time_bias: Tensor | None, span: int, top_k: int,
                   max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    summaries = dense_block_means(k, lengths - num_targets, span)  # [B, H, nb, D]
    scores = torch.einsum("bhld,bhcd->bhlc", at_least_fp32(q), summaries) * default_scale(D)  # [B, H, L, nb]
    mask = span_mask(scores, lengths, num_targets, span, top_k, max_attn_len)
    bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)
    out = dense_attention(q, k, v, mask, None if bias is None else bias.unsqueeze(1))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
