"""Attention over per-query key slots: the shared core of the sparse and hierarchical ops.

Every such op picks, for each query, a few keys out of an *extended* key set ``E`` (the L tokens,
possibly followed by block summaries or learned tokens). The reference paths write the choice as a
dense ``[B, H, L, E]`` mask and call :func:`dense_attention`; the fast paths gather ``K`` slots per
query (index ``[B, H, L, K]`` into ``E``) and call :func:`gathered_attention`. Both are softmax in at least fp32
with ``1/sqrt(D)`` scaling; every query row must have at least one allowed slot (its own token).
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import default_scale, log_time_bucket
from suan.ops.common.precision import at_least_fp32, working_dtype


def take(rows: Tensor, index: Tensor) -> Tensor:
    """``rows[b, index[b, ...]]`` per batch row, as one flat ``index_select`` (exports to ONNX ``Gather``).

    Args:
        rows: [B, E] or [B, E, D].
        index: [B, ...] int64, values in ``0..E-1``.

    Returns:
        ``index.shape`` (+ ``[D]``), the dtype of ``rows``.
    """
    B, E = rows.shape[:2]
    offset = (torch.arange(B, device=index.device) * E).view((B,) + (1,) * (index.dim() - 1))
    flat = rows.reshape((B * E,) + rows.shape[2:]).index_select(0, (index + offset).reshape(-1))
    return flat.view(index.shape + rows.shape[2:])


def pair_bias(gap: Tensor, dt: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None) -> Tensor | None:
    """``pos_bias[clamp(gap, 0, P - 1)] + time_bias[bucket(dt)]`` (the biases of ``rel_attention``).

    Args:
        gap: int64 position gaps (query - key), any shape.
        dt: int64 time gaps (query - key), broadcastable with ``gap``.
        pos_bias: [P] or None.
        time_bias: [128] or None.

    Returns:
        fp32 of the broadcast shape of ``gap`` and ``dt``, or None when both tables are None.
    """
    gap, dt = torch.broadcast_tensors(gap, dt)
    bias = None
    if pos_bias is not None:
        idx = gap.clamp(0, pos_bias.shape[0] - 1)
        bias = at_least_fp32(pos_bias.index_select(0, idx.reshape(-1)).view(idx.shape))
    if time_bias is not None:
        bucket = log_time_bucket(dt)
        tb = at_least_fp32(time_bias.index_select(0, bucket.reshape(-1)).view(bucket.shape))
        bias = tb if bias is None else bias + tb
    return bias


def dense_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, bias: Tensor | None = None) -> Tensor:
    """Reference: explicit scores over every extended key, dense mask, softmax (at least fp32 math).

    Args:
        q: [B, H, L, D].
        k, v: [B, H, E, D].
        allowed: [B, 1 or H, L, E] bool, at least one True per row.
        bias: [B, 1 or H, L, E] float or None. Default: None.

    Returns:
        [B, H, L, D] in the dtype of ``q``.
    """
    dtype = q.dtype
    q, k, v = at_least_fp32(q), at_least_fp32(k), at_least_fp32(v)
    scores = torch.einsum("bhid,bhjd->bhij", q, k) * default_scale(q.shape[-1])  # [B, H, L, E]
    if bias is not None:
        scores = scores + at_least_fp32(bias)
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.einsum("bhij,bhjd->bhid", probs, v).to(dtype)  # [B, H, L, D]


def gathered_attention(q: Tensor, k: Tensor, v: Tensor, index: Tensor, valid: Tensor,
                       bias: Tensor | None = None) -> Tensor:
    """Fast path: gather the K slots of every query from the extended keys, softmax over them.

    Args:
        q: [B, H, L, D].
        k, v: [B, H, E, D].
        index: [B, 1 or H, L, K] int64 into ``0..E-1`` (invalid slots may point anywhere in range).
        valid: [B, 1 or H, L, K] bool, at least one True per row.
        bias: [B, 1 or H, L, K] float or None. Default: None.

    Returns:
        [B, H, L, D]. Time and memory O(B·H·L·K·D).
    """
    B, H, L, D = q.shape
    E, K = k.shape[2], index.shape[-1]
    # row (b, h, e) of the flattened keys and values
    row = (torch.arange(B * H, device=q.device) * E).view(B, H, 1, 1)  # [B, H, 1, 1]
    flat = (index + row).reshape(-1)  # [B·H·L·K]
    k_g = k.reshape(B * H * E, D).index_select(0, flat).view(B, H, L, K, D)
    v_g = v.reshape(B * H * E, D).index_select(0, flat).view(B, H, L, K, D)
    scores = at_least_fp32(torch.matmul(q.unsqueeze(-2), k_g.transpose(-1, -2)).squeeze(-2))  # [B, H, L, K]
    scores = scores * default_scale(D)
    if bias is not None:
        scores = scores + at_least_fp32(bias)
    probs = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1).to(v_g.dtype)
    return torch.matmul(probs.unsqueeze(-2), v_g).squeeze(-2)  # [B, H, L, D]


def local_slots(pos: Tensor, lengths: Tensor, offsets: Tensor, limit: Tensor, max_attn_len: int = 0,
                ) -> tuple[Tensor, Tensor]:
    """Key index and validity of the slots ``p - d`` (``d`` in ``offsets``) of every query.

    Slot ``d = 0`` is the query's own token (also for candidates, which share the position ``n_hist``);
    ``d >= 1`` is the history token at position ``p - d`` if ``d <= limit`` and ``p - d >= 0``. Padded
    queries see only themselves.

    Args:
        pos: [B, L] query positions (``masks.positions``).
        lengths: [B] valid tokens.
        offsets: [K] int64 gaps, ``offsets[0] == 0``.
        limit: [B, L] the largest gap each query may use.
        max_attn_len: if > 0, only gaps below it. Default: 0.

    Returns:
        ([B, L, K] int64 token index, [B, L, K] bool).
    """
    L = pos.shape[1]
    idx = torch.arange(L, device=pos.device).view(1, L, 1)  # [1, L, 1]
    p = pos.unsqueeze(-1)  # [B, L, 1]
    is_self = offsets == 0  # [K]
    key = torch.where(is_self, idx, p - offsets)  # [B, L, K]
    valid = (key >= 0) & (offsets <= limit.unsqueeze(-1)) & (idx < lengths.view(-1, 1, 1))
    if max_attn_len > 0:
        valid = valid & (offsets < max_attn_len)
    return key.clamp(min=0), valid | is_self


def block_means(x: Tensor, block: int) -> Tensor:
    """Mean of every run of ``block`` positions (the last run zero-padded), by pad + reshape.

    Args:
        x: [B, H, L, D].
        block: b >= 1.

    Returns:
        [B, H, ceil(L / b), D]; only runs that lie wholly inside the history are meaningful.
    """
    B, H, L, D = x.shape
    padded = torch.nn.functional.pad(x, (0, 0, 0, (-L) % block))  # [B, H, nb·b, D]
    return padded.view(B, H, -1, block, D).mean(dim=3)


def dense_block_means(x: Tensor, n_hist: Tensor, block: int) -> Tensor:
    """Reference of :func:`block_means` over history tokens: a [B, nb, L] membership matrix times ``x``.

    Args:
        x: [B, H, L, D]. n_hist: [B] history tokens. block: b.

    Returns:
        [B, H, ceil(L / b), D] in at least fp32; equals :func:`block_means` on every block inside the history.
    """
    L = x.shape[2]
    j = torch.arange(L, device=x.device)
    c = torch.arange(-(-L // block), device=x.device)
    member = (j.view(1, 1, -1) // block == c.view(1, -1, 1)) & (j.view(1, 1, -1) < n_hist.view(-1, 1, 1))
    return torch.einsum("bcj,bhjd->bhcd", member.to(working_dtype(x)) / block, at_least_fp32(x))


def summary_slots(pos: Tensor, lengths: Tensor, timestamps: Tensor, block: int, num_blocks: int,
                  max_attn_len: int, pos_bias: Tensor | None, time_bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Which block summaries every query sees (blocks wholly before its own: ``c < p // b``) and their bias.

    The bias of block ``c`` is the pair bias at its last token ``(c + 1)·b - 1``; with ``max_attn_len > 0``
    a block is seen only if its first position is less than that far back.

    Args:
        pos: [B, L] query positions. lengths: [B]. timestamps: [B, L] int64. block: b.
        num_blocks: nb, the summaries (``ceil(L / b)``, may be symbolic).
        max_attn_len: 0 = unlimited. pos_bias: [P] or None. time_bias: [128] or None.

    Returns:
        ([B, L, nb] bool, [B, L, nb] fp32 bias, zero without tables).
    """
    B, L = pos.shape
    c = torch.arange(num_blocks, device=pos.device)  # [nb]
    last = (c + 1) * block - 1  # [nb] last position of a block
    p = pos.unsqueeze(-1)  # [B, L, 1]
    valid = (c < p // block) & (torch.arange(L, device=pos.device) < lengths.view(-1, 1)).unsqueeze(-1)
    if max_attn_len > 0:
        valid = valid & (p - c * block < max_attn_len)
    t_last = take(timestamps, last.clamp(max=L - 1).expand(B, -1))  # [B, nb]
    bias = pair_bias(p - last, timestamps.unsqueeze(-1) - t_last.unsqueeze(1), pos_bias, time_bias)
    return valid, torch.zeros(valid.shape, device=pos.device) if bias is None else bias


def top_k_units(scores: Tensor, eligible: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """The ``top_k`` best-scoring eligible units (spans, chunks) of every query, in any order.

    The unit axis is padded with k never-chosen entries so ``topk`` always has k to take, whatever the
    (symbolic) unit count; picks beyond the eligible units come back invalid (index 0).

    Args:
        scores: [B, H, L, N]. eligible: [B, 1 or H, L, N] bool. top_k: k.

    Returns:
        ([B, H, L, k] int64 unit index, [B, H, L, k] bool).
    """
    masked = at_least_fp32(scores).masked_fill(~eligible, float("-inf"))
    pad = torch.full(masked.shape[:-1] + (top_k,), float("-inf"), device=scores.device)
    best, index = torch.topk(torch.cat([masked, pad], dim=-1), top_k, dim=-1)  # [B, H, L, k]
    valid = best > float("-inf")
    return torch.where(valid, index, 0), valid
