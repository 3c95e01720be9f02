"""Masks, positions and time buckets of a target-aware, right-padded token sequence.

Layout of one row (length ``L`` after padding): ``[h_0 … h_{n-1}, c_0 … c_{T-1}, pad …]`` with
``lengths = n + T`` valid tokens of which the last ``T = num_targets`` are candidates. A history
token sees history tokens at or before it (causal); a candidate sees the whole history and itself
only, so candidates never see each other and scoring C candidates at once equals scoring each
alone. Candidates all sit at position ``n``, the position a single appended candidate would have.
Everything is tensor arithmetic (no searchsorted, no Python loop over L) so it exports to ONNX.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

TIME_BUCKETS = 128
TIME_BUCKET_DIVISOR = 0.301


def positions(lengths: Tensor, num_targets: Tensor, seq_len: int) -> Tensor:
    """Position of every token: ``i`` in the history, ``n`` (history length) for candidates.

    Args:
        lengths: [B] valid tokens (history + candidates).
        num_targets: [B] candidates at the end of the valid tokens.
        seq_len: L.

    Returns:
        [B, L] int64.
    """
    idx = torch.arange(seq_len, device=lengths.device).unsqueeze(0)  # [1, L]
    n_hist = (lengths - num_targets).unsqueeze(1)  # [B, 1]
    return torch.minimum(idx, n_hist)


def attention_mask(lengths: Tensor, num_targets: Tensor, seq_len: int, max_attn_len: int = 0) -> Tensor:
    """Which key each query may attend to.

    Args:
        lengths: [B] valid tokens.
        num_targets: [B] candidates (0 = plain causal sequence).
        seq_len: L.
        max_attn_len: if > 0, a query sees only keys less than this many positions back.

    Returns:
        [B, L, L] bool, True = attend. Padded query rows see only themselves (keeps softmax finite).
    """
    i = torch.arange(seq_len, device=lengths.device).view(1, seq_len, 1)  # [1, L, 1] queries
    j = torch.arange(seq_len, device=lengths.device).view(1, 1, seq_len)  # [1, 1, L] keys
    n = lengths.view(-1, 1, 1)
    n_hist = (lengths - num_targets).view(-1, 1, 1)
    diagonal = i == j
    history_key = j < n_hist
    # history queries: causal over history; candidate queries: the whole history
    allowed = ((j <= i) | (i >= n_hist)) & history_key & (i < n)
    if max_attn_len > 0:
        pos = positions(lengths, num_targets, seq_len)
        gap = pos.unsqueeze(2) - pos.unsqueeze(1)  # [B, L, L] query position - key position
        allowed = allowed & (gap < max_attn_len)
    return allowed | diagonal


def log_time_bucket(gap: Tensor) -> Tensor:
    """``floor(ln(max(|gap|, 1)) / 0.301)`` clipped to 0..127, in fp32 arithmetic (exports to ONNX).

    Args:
        gap: time gaps in seconds, any shape, any numeric dtype.

    Returns:
        int64 buckets of the same shape.
    """
    bucket = torch.floor(torch.log(torch.clamp(gap.abs().to(torch.float32), min=1.0)) / TIME_BUCKET_DIVISOR)
    return torch.clamp(bucket, 0, TIME_BUCKETS - 1).to(torch.int64)


def time_buckets(timestamps: Tensor) -> Tensor:
    """Pairwise log time-gap bucket ``floor(ln(max(|t_i - t_j|, 1)) / 0.301)`` clipped to 0..127.

    Args:
        timestamps: [B, L] int64 unix seconds (candidates carry the impression time).

    Returns:
        [B, L, L] int64.
    """
    return log_time_bucket(timestamps.unsqueeze(2) - timestamps.unsqueeze(1))  # [B, L, L]


def relative_bias(
    lengths: Tensor, num_targets: Tensor, timestamps: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None
) -> Tensor | None:
    """Additive bias shared across heads: ``pos_bias[pos_i - pos_j] + time_bias[bucket(t_i, t_j)]``.

    Args:
        pos_bias: [P] learned Toeplitz weights over the (clamped) position gap, or None.
        time_bias: [TIME_BUCKETS] learned weights per time bucket, or None.

    Returns:
        [B, L, L] float or None when both are None.
    """
    seq_len = timestamps.shape[1]
    bias = None
    if pos_bias is not None:
        pos = positions(lengths, num_targets, seq_len)
        gap = (pos.unsqueeze(2) - pos.unsqueeze(1)).clamp(0, pos_bias.shape[0] - 1)  # [B, L, L]
        bias = lookup(pos_bias, gap)
    if time_bias is not None:
        tb = lookup(time_bias, time_buckets(timestamps))
        bias = tb if bias is None else bias + tb
    return bias


def lookup(table: Tensor, index: Tensor) -> Tensor:
    """``table[index]`` for a 1-D table, as a flat ``index_select``.

    Advanced indexing exports to ONNX ``GatherND``, which onnxruntime runs several times slower than
    the plain ``Gather`` this exports to (measured: two bias GatherNDs took 35% of a LightSUAN graph).

    Args:
        table: [P].
        index: int64, any shape, values in ``0..P-1``.

    Returns:
        ``index.shape``, the dtype of ``table``.
    """
    return table.index_select(0, index.reshape(-1)).view(index.shape)


def valid_tokens(lengths: Tensor, seq_len: int) -> Tensor:
    """[B, L] bool, True for the first ``lengths[b]`` tokens."""
    return torch.arange(seq_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def as_targets(num_targets: Tensor | int, lengths: Tensor) -> Tensor:
    """``num_targets`` as an int64 [B] tensor (an int is broadcast), never more than ``lengths``."""
    if not isinstance(num_targets, Tensor):
        num_targets = torch.full_like(lengths, int(num_targets))
    return torch.minimum(num_targets.to(lengths.dtype), lengths)


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
