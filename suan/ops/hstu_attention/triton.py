"""Triton path: fused HSTU pointwise attention ``SiLU(q·k / sqrt(D) + bias) / (n_hist + 1)``.

The shared kernels of ``suan.ops.common.attention_triton`` in their pointwise mode: one dense part
(every earlier history key within the window, plus each candidate's own token), no softmax state, so the
backward needs neither the log-sum-exp nor the row constant ``delta``. Biases are computed in-kernel and
get their gradients from fp32 atomic adds.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common import attention_triton as kernels
from suan.ops.common.attention_fn import parts_attention


def hstu_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                   pos_bias: Tensor | None, time_bias: Tensor | None, max_attn_len: int) -> Tensor:
    """Padded entry point; see ``suan.ops.hstu_attention.hstu_attention``.

    Args:
        q, k, v: [B, H, L, D]. lengths, num_targets: [B]. timestamps: [B, L] int64.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    layout = kernels.Layout.from_padded(lengths, num_targets, timestamps)
    return parts_attention(q, k, v, layout, pos_bias, time_bias, [kernels.dense_part(max_attn_len, layout.max_len)],
                           pointwise=True)


def hstu_attention_jagged(q: Tensor, k: Tensor, v: Tensor, *, offsets: Tensor, num_targets: Tensor,
                          timestamps: Tensor, max_len: int, pos_bias: Tensor | None = None,
                          time_bias: Tensor | None = None, max_attn_len: int = 0) -> Tensor:
    """Jagged entry point (``[N, H, D]`` values + ``offsets`` [B + 1]); arguments as ``rel_attention_jagged``.

    Returns:
        [N, H, D].
    """
    layout = kernels.Layout.from_jagged(offsets, num_targets, timestamps, max_len)
    return parts_attention(q, k, v, layout, pos_bias, time_bias, [kernels.dense_part(max_attn_len, layout.max_len)],
                           pointwise=True)
