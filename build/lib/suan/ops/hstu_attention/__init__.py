"""HSTU pointwise attention: ``SiLU(q·k + bias) / n`` on the same target-aware masks.

One dispatch point: ``naive`` and ``torch`` are the vectorised reference (also the ONNX export path),
``triton`` the fused kernels, forward and backward (``auto`` picks it on CUDA; the module is imported only
when chosen; its jagged entry point is ``triton.hstu_attention_jagged``).
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.hstu_attention import naive


def hstu_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
    pos_bias: Tensor | None = None, time_bias: Tensor | None = None, max_attn_len: int = 0,
    backend: str = "auto",
) -> Tensor:
    """Pointwise (non-softmax) attention of HSTU.

    Args:
        q, k, v: [B, H, L, D].
        lengths, num_targets, timestamps, pos_bias, time_bias, max_attn_len: as in ``rel_attention``.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D]: ``sum_j SiLU(s_ij) v_j / (n_hist + 1)`` over allowed keys.
    """
    chosen = resolve(backend, q, has_triton=True)
    if chosen == "triton":
        from suan.ops.hstu_attention import triton as triton_path

        impl = triton_path.hstu_attention
    else:
        impl = naive.hstu_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                pos_bias=pos_bias, time_bias=time_bias, max_attn_len=max_attn_len)
