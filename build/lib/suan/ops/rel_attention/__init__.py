"""Softmax attention with an additive relative-position + time bias and target-aware masks.

``rel_attention`` is the one dispatch point: ``naive`` (explicit matmul-softmax, the ground truth),
``torch`` (SDPA with a float bias: the fast CPU path and the ONNX export path) or ``triton`` (fused
kernels with the bias computed in-kernel, forward and backward; ``auto`` picks it on CUDA). The Triton
module is imported only when chosen; its jagged entry point is ``triton.rel_attention_jagged``.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.rel_attention import naive
from suan.ops.rel_attention import torch as torch_path


def rel_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
    pos_bias: Tensor | None = None, time_bias: Tensor | None = None, max_attn_len: int = 0,
    backend: str = "auto",
) -> Tensor:
    """Target-aware causal softmax attention.

    Args:
        q, k, v: [B, H, L, D].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] candidates at the end of the valid tokens.
        timestamps: [B, L] int64 (candidates carry the impression time).
        pos_bias: [P] Toeplitz bias over position gaps, shared by heads. Default: None.
        time_bias: [128] bias per log time-gap bucket, shared by heads. Default: None.
        max_attn_len: local window in positions, 0 = unlimited. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D], zero at padded positions.
    """
    chosen = resolve(backend, q, has_triton=True)
    if chosen == "triton":
        from suan.ops.rel_attention import triton as triton_path

        impl = triton_path.rel_attention
    else:
        impl = naive.rel_attention if chosen == "naive" else torch_path.rel_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                pos_bias=pos_bias, time_bias=time_bias, max_attn_len=max_attn_len)
