"""Routing Transformer attention: tokens attend causally within their k-means cluster (plus themselves).

``routing_attention`` is the one dispatch point: ``naive`` (dense mask, explicit matmul-softmax, the ground
truth) or ``torch`` (counting-sort ranks and a gather of ``w + 1`` slots per query: the fast CPU path and
the ONNX path). ``update_centroids`` is the online k-means step the mixer runs in training mode.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.routing_attention import naive
from suan.ops.routing_attention import torch as torch_path
from suan.ops.routing_attention.kmeans import assign_clusters, update_centroids
from suan.ops.routing_attention.naive import routing_mask

__all__ = ["assign_clusters", "routing_attention", "routing_mask", "update_centroids"]


def routing_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, timestamps: Tensor,
    centroids: Tensor, pos_bias: Tensor | None = None, time_bias: Tensor | None = None, capacity: int,
    max_attn_len: int = 0, backend: str = "auto",
) -> Tensor:
    """Target-aware causal routing attention (Roy et al., 2021, "Routing Transformer").

    Every token is routed to the centroid nearest its L2-normalised key (per head). A query at position
    ``p`` (history ``i``: ``p = i``; every candidate: ``p = n_hist``) attends to itself and to the
    ``capacity`` most recent history tokens ``j < p`` of its own cluster, with the biases of
    ``rel_attention``. The cap plays the part of the paper's equal-size windows in cluster-sorted order;
    with ``capacity >= L`` it is exact within-cluster attention. A candidate's routing and keys depend on
    the history and itself only.

    Args:
        q, k, v: [B, H, L, D].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int) candidates at the end of the valid tokens.
        timestamps: [B, L] int64.
        centroids: [H, C, D] unit-norm cluster centres (C clusters per head).
        pos_bias: [P] bias over position gaps (clamped to P - 1), shared by heads. Default: None.
        time_bias: [128] bias per log time-gap bucket, shared by heads. Default: None.
        capacity: w >= 0, the most same-cluster keys a query sees besides itself.
        max_attn_len: if > 0, additionally only keys less than this many positions back. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    if capacity < 0:
        raise ValueError(f"need capacity >= 0, got {capacity}")
    if centroids.dim() != 3 or centroids.shape[0] != q.shape[1] or centroids.shape[2] != q.shape[3]:
        raise ValueError(f"centroids must be [H, C, D] = [{q.shape[1]}, C, {q.shape[3]}], "
                         f"got {tuple(centroids.shape)}")
    chosen = resolve(backend, q, has_triton=False)
    impl = naive.routing_attention if chosen == "naive" else torch_path.routing_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                centroids=centroids, pos_bias=pos_bias, time_bias=time_bias, capacity=capacity,
                max_attn_len=max_attn_len)
