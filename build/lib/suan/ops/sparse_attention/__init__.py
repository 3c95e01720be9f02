"""LightSUAN sparse self-attention: a local window plus a dilated stride, with the relative bias.

``sparse_attention`` is the one dispatch point: ``naive`` (dense mask, explicit matmul-softmax, the
ground truth), ``torch`` (gather of the O(k + L/r) keys per query: the fast CPU path and the ONNX
export path) or ``triton`` (fused kernels over the local band and the dilated residue classes; ``auto``
picks it on CUDA). See ``README.md`` for the mask definition, the cost and the export notes.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.sparse_attention import naive
from suan.ops.sparse_attention import torch as torch_path
from suan.ops.sparse_attention.naive import sparse_attention_mask
from suan.ops.sparse_attention.torch import sparse_offsets

__all__ = ["sparse_attention", "sparse_attention_mask", "sparse_offsets"]


def sparse_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, timestamps: Tensor,
    pos_bias: Tensor | None = None, time_bias: Tensor | None = None, local_window: int, dilation: int,
    max_attn_len: int = 0, backend: str = "auto",
) -> Tensor:
    """Target-aware softmax attention over a local window and a dilated stride of earlier positions.

    A query at position ``p`` (history token ``i``: ``p = i``; every candidate: ``p = n_hist``) attends to
    itself and to the history keys at positions ``p - d`` for ``d`` in ``{1..k} ∪ {m·r : m >= 1}``, with
    the same learned biases as ``rel_attention`` (``pos_bias[d]``, ``time_bias[bucket(t_q - t_key)]``).
    With ``r = 1`` or ``k >= L - 1`` it equals ``rel_attention``.

    Args:
        q, k, v: [B, H, L, D].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int for every row) candidates at the end of the valid tokens, clamped to
            ``lengths``.
        timestamps: [B, L] int64 (candidates carry the impression time).
        pos_bias: [P] bias over position gaps (clamped to P - 1), shared by heads. Default: None.
        time_bias: [128] bias per log time-gap bucket, shared by heads. Default: None.
        local_window: k >= 0, the previous positions every query sees.
        dilation: r >= 1, every r-th earlier position (relative to the query) is also seen.
        max_attn_len: if > 0, additionally only keys less than this many positions back. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    if local_window < 0 or dilation < 1:
        raise ValueError(f"need local_window >= 0 and dilation >= 1, got {local_window} and {dilation}")
    chosen = resolve(backend, q, has_triton=True)
    if chosen == "triton":
        from suan.ops.sparse_attention import triton as triton_path

        impl = triton_path.sparse_attention
    else:
        impl = naive.sparse_attention if chosen == "naive" else torch_path.sparse_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                pos_bias=pos_bias, time_bias=time_bias, local_window=local_window, dilation=dilation,
                max_attn_len=max_attn_len)
