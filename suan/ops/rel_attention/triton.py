"""Triton path: fused softmax attention with the relative-position and time-bucket biases computed in-kernel.

Forward and backward run the shared kernels (``suan.ops.common.attention_triton``, through the one autograd
Function of ``attention_fn``) as one dense part (every earlier history key within the window, plus each
candidate's own token). The bias tables get
their gradients from fp32 atomic adds. Two entry points: padded ``[B, H, L, D]`` and jagged ``[N, H, D]``
+ ``offsets`` — the same kernels, only the strides differ.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common import attention_triton as kernels
from suan.ops.common.attention_fn import parts_attention


def rel_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                  pos_bias: Tensor | None, time_bias: Tensor | None, max_attn_len: int) -> Tensor:
    """Padded entry point; see ``suan.ops.rel_attention.rel_attention``.

    Args:
        q, k, v: [B, H, L, D]. lengths, num_targets: [B]. timestamps: [B, L] int64.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    layout = kernels.Layout.from_padded(lengths, num_targets, timestamps)
    return parts_attention(q, k, v, layout, pos_bias, time_bias, [kernels.dense_part(max_attn_len, layout.max_len)])


def rel_attention_jagged(q: Tensor, k: Tensor, v: Tensor, *, offsets: Tensor, num_targets: Tensor,
                         timestamps: Tensor, max_len: int, pos_bias: Tensor | None = None,
                         time_bias: Tensor | None = None, max_attn_len: int = 0) -> Tensor:
    """Jagged entry point: the same attention on the concatenated valid tokens of every sequence.

    Args:
        q, k, v: [N, H, D], sequence b is rows ``offsets[b]:offsets[b + 1]``.
        offsets: [B + 1] int64, non-decreasing, ``offsets[0] = 0``, ``offsets[B] = N``.
        num_targets: [B] candidates at the end of each sequence (at most its length).
        timestamps: [N] int64.
        max_len: at least the longest sequence (sizes the launch grid).
        pos_bias: [P] or None. Default: None.
        time_bias: [128] or None. Default: None.
        max_attn_len: local window in positions, 0 = unlimited. Default: 0.

    Returns:
        [N, H, D].
    """
    layout = kernels.Layout.from_jagged(offsets, num_targets, timestamps, max_len)
    return parts_attention(q, k, v, layout, pos_bias, time_bias, [kernels.dense_part(max_attn_len, layout.max_len)])
