"""Fast CPU path and ONNX export path: order keys by (cluster, position) without a sort, gather ``w`` slots.

Every key gets its rank in the (cluster, position) order from per-cluster counts (a cumsum over L of a
one-hot [B, H, L, C + 1]; non-history tokens go to a sentinel cluster ``C`` after every real one). A
query's slots are the ``w`` ranks just below its own (a candidate's rank is the end of its cluster's
run), kept where that key is in the query's cluster. Cost O(B·H·L·(C + w·D)); no sort, no searchsorted.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import positions, valid_tokens
from suan.ops.common.slots import gathered_attention, pair_bias, take
from suan.ops.routing_attention.kmeans import assign_clusters


def _take_bh(rows: Tensor, index: Tensor) -> Tensor:
    """``rows[b, h, index[b, h, ...]]``: rows [B, H, E], index [B, H, ...] → ``index.shape``."""
    return take(rows.flatten(0, 1), index.flatten(0, 1)).view(index.shape)


def _slots(clusters: Tensor, pos: Tensor, lengths: Tensor, num_targets: Tensor, num_clusters: int, capacity: int,
           max_attn_len: int) -> tuple[Tensor, Tensor]:
    """Key index and validity of the self slot and the ``capacity`` most recent same-cluster history keys.

    Args:
        clusters: [B, H, L]. pos: [B, L] positions. lengths, num_targets: [B]. num_clusters: C.
        capacity: w. max_attn_len: 0 = unlimited.

    Returns:
        ([B, H, L, w + 1] int64 token index, [B, H, L, w + 1] bool).
    """
    B, H, L = clusters.shape
    idx = torch.arange(L, device=clusters.device)
    history = (idx < (lengths - num_targets).view(B, 1)).unsqueeze(1)  # [B, 1, L]
    key_cluster = torch.where(history, clusters, num_clusters)  # [B, H, L], sentinel C for non-history
    onehot = (key_cluster.unsqueeze(-1) == torch.arange(num_clusters + 1, device=clusters.device)).long()
    before = onehot.cumsum(dim=2) - onehot  # [B, H, L, C + 1] keys of each cluster earlier than each token
    total = onehot.sum(dim=2)  # [B, H, C + 1]
    start = total.cumsum(dim=-1) - total  # [B, H, C + 1] first rank of every cluster
    key_rank = torch.gather(start.unsqueeze(2) + before, -1, key_cluster.unsqueeze(-1)).squeeze(-1)  # [B, H, L]
    order = torch.zeros_like(key_rank).scatter(-1, key_rank, idx.expand(B, H, L))  # [B, H, L] rank -> token
    # a history token's own rank; the end of its cluster's run for a candidate (all history is earlier)
    query_rank = torch.where(history, key_rank, torch.gather(start + total, -1, clusters))  # [B, H, L]
    d = torch.arange(capacity + 1, device=clusters.device)  # [w + 1], slot 0 = self
    rank = query_rank.unsqueeze(-1) - d  # [B, H, L, w + 1]
    key = _take_bh(order, rank.clamp(min=0))
    valid = (rank >= 0) & (_take_bh(key_cluster, key) == clusters.unsqueeze(-1))
    valid = valid & (idx < lengths.view(B, 1)).view(B, 1, L, 1)
    if max_attn_len > 0:
        valid = valid & (pos.view(B, 1, L, 1) - take(pos, key.flatten(1)).view(key.shape) < max_attn_len)
    is_self = d == 0
    return torch.where(is_self, idx.view(1, 1, L, 1), key), valid | is_self


def routing_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
                      timestamps: Tensor, centroids: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None, capacity: int,
                      max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    pos = positions(lengths, num_targets, L)  # [B, L]
    key, valid = _slots(assign_clusters(k, centroids), pos, lengths, num_targets, centroids.shape[1], capacity,
                        max_attn_len)  # [B, H, L, w + 1]
    gap = pos.view(B, 1, L, 1) - take(pos, key.flatten(1)).view(key.shape)
    dt = timestamps.view(B, 1, L, 1) - take(timestamps, key.flatten(1)).view(key.shape)
    out = gathered_attention(q, k, v, key, valid, pair_bias(gap, dt, pos_bias, time_bias))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
