"""Superlinear span-search attention (N = 2): queries score span summaries, attend to the top-k spans.

``span_attention`` is the one dispatch point: ``naive`` (dense span scores, rank-based selection, dense
token mask, the ground truth) or ``torch`` (top-k + gather of ``s·(k + 1)`` slots per query: the fast CPU
path and the ONNX path).
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.span_attention import naive
from suan.ops.span_attention import torch as torch_path
from suan.ops.span_attention.naive import span_mask

__all__ = ["span_attention", "span_mask"]


def span_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, timestamps: Tensor,
    pos_bias: Tensor | None = None, time_bias: Tensor | None = None, span: int, top_k: int,
    max_attn_len: int = 0, backend: str = "auto",
) -> Tensor:
    """Target-aware causal span-search attention (superlinear attention with N = 2).

    Positions are cut into spans of ``s``. A query at position ``p`` (history ``i``: ``p = i``; every
    candidate: ``p = n_hist``) scores every span wholly before its own (``c < p // s``) by
    ``q·mean(k over the span) / sqrt(D)`` (the span search), keeps the ``top_k`` best, and attends in one
    softmax to itself, the history tokens of its own span before it (``(p // s)·s <= j < p``) and every
    token of the kept spans, with the biases of ``rel_attention``. No earlier position is structurally
    excluded: each is reachable when its span is chosen. With ``s ≈ k ≈ sqrt(L)`` the cost is O(L^1.5).

    Args:
        q, k, v: [B, H, L, D].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int) candidates at the end of the valid tokens.
        timestamps: [B, L] int64.
        pos_bias: [P] bias over position gaps (clamped to P - 1), shared by heads. Default: None.
        time_bias: [128] bias per log time-gap bucket, shared by heads. Default: None.
        span: s >= 1, positions per span.
        top_k: k >= 1, spans kept per query (per head).
        max_attn_len: if > 0, only keys less than this many positions back, and only spans with such a
            key are searched. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    if span < 1 or top_k < 1:
        raise ValueError(f"need span >= 1 and top_k >= 1, got {span} and {top_k}")
    chosen = resolve(backend, q, has_triton=False)
    impl = naive.span_attention if chosen == "naive" else torch_path.span_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                pos_bias=pos_bias, time_bias=time_bias, span=span, top_k=top_k, max_attn_len=max_attn_len)
