"""Fast CPU path and ONNX export path: gather the K = O(k + L/r) keys of every query, softmax over them.

Cost is O(B·H·L·K·D) time and memory instead of O(B·H·L²·D); the key slots are one offsets tensor
built with tensor ops from the (possibly symbolic) L, so an exported graph keeps L dynamic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.backend import tracing
from suan.ops.common.masks import default_scale, log_time_bucket, lookup, positions, valid_tokens
from suan.ops.common.precision import at_least_fp32

# gathered elements ([B, H, chunk, K, D]) per query chunk in eager mode: a few MB are served again and again
# from the allocator's heap, while one whole-sequence gather spends most of its time faulting in fresh pages
# (measured 3-5x slower at L >= 1000 on one CPU thread)
CHUNK_ELEMENTS = 2**20


def sparse_offsets(seq_len: int, local_window: int, dilation: int, device: torch.device | None = None) -> Tensor:
    """Position gaps of the key slots of every query: ``0`` (itself), ``1..k``, then ``s, s+r, …``.

    ``s`` is the first multiple of r greater than k. The dilated part has ``L // r + 1`` slots, at least as
    many as any query of a length-L sequence can use (those reaching before position 0 are masked), so its
    size is a closed form of L: no Python loop and no searchsorted, and an exported graph keeps L dynamic.

    Args:
        seq_len: L (an int, or a symbolic size under export).
        local_window: k >= 0.
        dilation: r >= 1.
        device: where to build the tensor. Default: None (CPU).

    Returns:
        [K] int64, distinct, ``K = (k + 1) + (L // r + 1)``.
    """
    start = (local_window // dilation + 1) * dilation
    local = torch.arange(local_window + 1, device=device)  # [k + 1], slot 0 = self
    dilated = start + dilation * torch.arange(seq_len // dilation + 1, device=device)  # [L // r + 1]
    return torch.cat([local, dilated])


def _key_index(lengths: Tensor, num_targets: Tensor, offsets: Tensor, seq_len: int,
               max_attn_len: int) -> tuple[Tensor, Tensor]:
    """Token index of every key slot (clamped into range) and whether the slot is attended.

    Returns:
        ([B, L, K] int64, [B, L, K] bool).
    """
    idx = torch.arange(seq_len, device=lengths.device).view(1, seq_len, 1)  # [1, L, 1]
    pos = positions(lengths, num_targets, seq_len).unsqueeze(-1)  # [B, L, 1]
    is_self = offsets == 0  # [K]
    # a candidate's own slot is its token, not the position n_hist it shares with the other candidates
    key = torch.where(is_self, idx, pos - offsets)  # [B, L, K]
    # keys before position 0 do not exist; padded queries (idx >= lengths) see only themselves
    valid = ((key >= 0) & (idx < lengths.view(-1, 1, 1))) | is_self
    if max_attn_len > 0:
        valid = valid & (offsets < max_attn_len)
    return key.clamp(min=0), valid


def _attend(q: Tensor, key: Tensor, valid: Tensor, t_query: Tensor, k_rows: Tensor, v_rows: Tensor,
            t_rows: Tensor, slot_bias: Tensor | None, time_bias: Tensor | None, seq_len: int) -> Tensor:
    """Attention of a block of ``n`` queries over their gathered key slots.

    Args:
        q: [B, H, n, D]; key, valid: [B, n, K]; t_query: [B, n]; k_rows, v_rows: [B·H·L, D];
        t_rows: [B·L]; slot_bias: [K] or None; time_bias: [128] or None; seq_len: L.

    Returns:
        [B, H, n, D].
    """
    B, H, n, D = q.shape
    K = key.shape[-1]
    # row (b, h, key) of the flattened k and v
    row = (torch.arange(B * H, device=q.device) * seq_len).view(B, H, 1, 1)  # [B, H, 1, 1]
    flat = (key.unsqueeze(1) + row).reshape(-1)  # [B·H·n·K]
    k_g = k_rows.index_select(0, flat).view(B, H, n, K, D)
    v_g = v_rows.index_select(0, flat).view(B, H, n, K, D)
    scores = at_least_fp32(torch.matmul(q.unsqueeze(-2), k_g.transpose(-1, -2)).squeeze(-2))  # [B, H, n, K]
    scores = scores * default_scale(D)
    if slot_bias is not None:
        scores = scores + slot_bias  # [K] over the last dim
    if time_bias is not None:
        batch_row = (torch.arange(B, device=q.device) * seq_len).view(B, 1, 1)  # [B, 1, 1]
        t_key = t_rows.index_select(0, (key + batch_row).reshape(-1)).view(B, n, K)
        bucket = log_time_bucket(t_query.unsqueeze(-1) - t_key)  # [B, n, K]
        scores = scores + at_least_fp32(lookup(time_bias, bucket)).unsqueeze(1)
    # slot 0 (self) is always valid, so no row is all -inf
    probs = torch.softmax(scores.masked_fill(~valid.unsqueeze(1), float("-inf")), dim=-1).to(v_g.dtype)
    return torch.matmul(probs.unsqueeze(-2), v_g).squeeze(-2)  # [B, H, n, D]


def sparse_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                     pos_bias: Tensor | None, time_bias: Tensor | None, local_window: int, dilation: int,
                     max_attn_len: int, query_chunk: int = 0) -> Tensor:
    """See ``suan.ops.sparse_attention.sparse_attention``; ``query_chunk`` (eager only, 0 = by
    ``CHUNK_ELEMENTS``) sets how many queries are gathered at once. Default: 0."""
    B, H, L, D = q.shape
    offsets = sparse_offsets(L, local_window, dilation, q.device)  # [K]
    key, valid = _key_index(lengths, num_targets, offsets, L, max_attn_len)  # [B, L, K]
    # the position gap of slot d is d itself, for history queries and candidates alike
    slot_bias = None if pos_bias is None else at_least_fp32(lookup(pos_bias, offsets.clamp(max=pos_bias.shape[0] - 1)))
    k_rows, v_rows = k.reshape(B * H * L, D), v.reshape(B * H * L, D)
    t_rows = timestamps.reshape(-1)  # [B·L]
    shared = dict(k_rows=k_rows, v_rows=v_rows, t_rows=t_rows, slot_bias=slot_bias, time_bias=time_bias, seq_len=L)
    if tracing():
        # export and compile see one whole-sequence block: a loop over chunks would fix L in the graph
        out = _attend(q, key, valid, timestamps, **shared)
    else:
        chunk = query_chunk or max(1, CHUNK_ELEMENTS // max(1, B * H * offsets.shape[0] * D))
        # max(L, 1): an empty sequence still goes through one (empty) block
        out = torch.cat([_attend(q[:, :, s:s + chunk], key[:, s:s + chunk], valid[:, s:s + chunk],
                                 timestamps[:, s:s + chunk], **shared) for s in range(0, max(L, 1), chunk)], dim=2)
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
