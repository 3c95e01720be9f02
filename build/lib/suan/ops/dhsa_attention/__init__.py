"""Dynamic Hierarchical Sparse Attention: variable-length chunks, length-normalised chunk representations
scored against each query, the tokens of the best chunks kept.

``dhsa_attention`` is the one dispatch point: ``naive`` (dense membership, scores and mask, selection by
rank: the ground truth) or ``torch`` (``scatter_add`` chunk tables, ``topk`` and a gather of
``c·(m + 1)`` slots per query: the fast CPU path and the ONNX path). ``session_boundaries`` is the
boundary rule the mixer uses.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.dhsa_attention import naive
from suan.ops.dhsa_attention import torch as torch_path
from suan.ops.dhsa_attention.chunks import chunk_ids, session_boundaries
from suan.ops.dhsa_attention.naive import dhsa_mask

__all__ = ["chunk_ids", "dhsa_attention", "dhsa_mask", "session_boundaries"]


def dhsa_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, timestamps: Tensor,
    boundaries: Tensor, pos_bias: Tensor | None = None, time_bias: Tensor | None = None, chunk: int, top_k: int,
    max_attn_len: int = 0, backend: str = "auto",
) -> Tensor:
    """Target-aware causal DHSA (Xiong et al., 2025, "Dynamic Hierarchical Sparse Attention").

    The history is cut into chunks at ``boundaries`` and every ``c`` positions (``chunk_ids``). Each chunk
    is represented by ``sum(k over the chunk) / sqrt(size)`` (length-normalised). A query at position
    ``p`` (history ``i``: ``p = i``; every candidate: ``p = n_hist``) scores the complete chunks before its
    own by ``q·rep / sqrt(D)``; the chunk score is every token's importance (upsampled), and the tokens of
    the ``top_k`` best chunks are kept (a budget of at most ``top_k·c`` tokens). It attends in one softmax
    to those, to the earlier tokens of its own chunk and to itself, with the biases of ``rel_attention``.

    Args:
        q, k, v: [B, H, L, D].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int) candidates at the end of the valid tokens.
        timestamps: [B, L] int64.
        boundaries: [B, L] bool, True where a token starts a chunk (a candidate's flag says whether it
            would start one after the history); e.g. ``session_boundaries``.
        pos_bias: [P] bias over position gaps (clamped to P - 1), shared by heads. Default: None.
        time_bias: [128] bias per log time-gap bucket, shared by heads. Default: None.
        chunk: c >= 1, the longest chunk.
        top_k: m >= 1, chunks kept per query (per head).
        max_attn_len: if > 0, only keys less than this many positions back, and only chunks with such a
            key are searched. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    if chunk < 1 or top_k < 1:
        raise ValueError(f"need chunk >= 1 and top_k >= 1, got {chunk} and {top_k}")
    chosen = resolve(backend, q, has_triton=False)
    impl = naive.dhsa_attention if chosen == "naive" else torch_path.dhsa_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                boundaries=boundaries, pos_bias=pos_bias, time_bias=time_bias, chunk=chunk, top_k=top_k,
                max_attn_len=max_attn_len)
