"""Reference: the routing pattern as a dense [B, H, L, L] mask, explicit matmul-softmax (at least fp32 math)."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import positions, relative_bias, valid_tokens
from suan.ops.common.slots import dense_attention
from suan.ops.routing_attention.kmeans import assign_clusters


def routing_mask(clusters: Tensor, lengths: Tensor, num_targets: Tensor, capacity: int,
                 max_attn_len: int = 0) -> Tensor:
    """Every query sees itself and the ``capacity`` most recent earlier history tokens of its own cluster.

    Args:
        clusters: [B, H, L] cluster of every token. lengths: [B]. num_targets: [B]. capacity: w >= 0.
        max_attn_len: if > 0, additionally only keys less than this many positions back. Default: 0.

    Returns:
        [B, H, L, L] bool, True = attend. Padded query rows see only themselves.
    """
    B, H, L = clusters.shape
    pos = positions(lengths, num_targets, L).view(B, 1, L, 1)  # query positions
    j = torch.arange(L, device=clusters.device).view(1, 1, 1, L)
    history_key = j < (lengths - num_targets).view(B, 1, 1, 1)
    valid_query = valid_tokens(lengths, L).view(B, 1, L, 1)
    same = (clusters.unsqueeze(-1) == clusters.unsqueeze(-2)) & history_key & (j < pos) & valid_query
    # same-cluster earlier keys strictly more recent than key j
    newer = same.flip(-1).cumsum(-1).flip(-1) - same.long()  # [B, H, L, L]
    allowed = same & (newer < capacity)
    if max_attn_len > 0:
        allowed = allowed & (pos - j < max_attn_len)
    return allowed | torch.eye(L, dtype=torch.bool, device=clusters.device)


def routing_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
                      timestamps: Tensor, centroids: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None, capacity: int,
                      max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    mask = routing_mask(assign_clusters(k, centroids), lengths, num_targets, capacity, max_attn_len)
    bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)
    out = dense_attention(q, k, v, mask, None if bias is None else bias.unsqueeze(1))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
