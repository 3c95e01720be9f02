"""Triton path: fused HSTU pointwise attention ``SiLU(q·k / sqrt(D) + bias) / (n_hist + 1)``.

The shared kernels of ``suan.ops.common.attention_triton`` in their pointwise mode: one dense part
(every earlier history key within the window, plus each candidate's own token), no softmax state, so the
backward needs neither the log-sum-exp nor the row constant ``delta``. Biases are computed in-kernel and
get their gradients from fp32 atomic adds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common import attention_triton as kernels
from suan.ops.common.masks import default_scale
from suan.ops.rel_attention.triton import bias_grads, cast_like


class HstuAttentionFn(torch.autograd.Function):
    """Differentiable in q, k, v, pos_bias and time_bias; ``layout`` and ``max_attn_len`` are constants."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None,
                layout: kernels.Layout, max_attn_len: int) -> Tensor:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        part = kernels.dense_part(max_attn_len, layout.max_len)
        scale = default_scale(q.shape[-1])
        out = torch.empty_like(q)
        kernels.forward(q, k, v, layout, pos_bias, time_bias, part, scale, pointwise=True, out=out, lse=None)
        ctx.save_for_backward(q, k, v, pos_bias, time_bias)
        ctx.layout, ctx.part, ctx.scale = layout, part, scale
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, pos_bias, time_bias = ctx.saved_tensors
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dpos, dtime = bias_grads(pos_bias, time_bias, ctx.needs_input_grad[3:5])
        kernels.backward(q, k, v, grad_out.contiguous(), None, None, ctx.layout, pos_bias, time_bias, ctx.part,
                         ctx.scale, pointwise=True, dq=dq, dk=dk, dv=dv, dpos=dpos, dtime=dtime)
        return dq, dk, dv, cast_like(dpos, pos_bias), cast_like(dtime, time_bias), None, None


def hstu_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                   pos_bias: Tensor | None, time_bias: Tensor | None, max_attn_len: int) -> Tensor:
    """Padded entry point; see ``suan.ops.hstu_attention.hstu_attention``.

    Args:
        q, k, v: [B, H, L, D]. lengths, num_targets: [B]. timestamps: [B, L] int64.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    kernels.check_device(q)
    layout = kernels.Layout.from_padded(lengths, num_targets, timestamps)
    return HstuAttentionFn.apply(q, k, v, pos_bias, time_bias, layout, max_attn_len)


def hstu_attention_jagged(q: Tensor, k: Tensor, v: Tensor, *, offsets: Tensor, num_targets: Tensor,
                          timestamps: Tensor, max_len: int, pos_bias: Tensor | None = None,
                          time_bias: Tensor | None = None, max_attn_len: int = 0) -> Tensor:
    """Jagged entry point (``[N, H, D]`` values + ``offsets`` [B + 1]); arguments as ``rel_attention_jagged``.

    Returns:
        [N, H, D].
    """
    kernels.check_device(q)
    layout = kernels.Layout.from_jagged(offsets, num_targets, timestamps, max_len)
    return HstuAttentionFn.apply(q, k, v, pos_bias, time_bias, layout, max_attn_len)
