"""Triton path: fused softmax attention with the relative-position and time-bucket biases computed in-kernel.

Forward and backward run the shared kernels of ``suan.ops.common.attention_triton`` as one dense part
(every earlier history key within the window, plus each candidate's own token). The bias tables get
their gradients from fp32 atomic adds. Two entry points: padded ``[B, H, L, D]`` and jagged ``[N, H, D]``
+ ``offsets`` — the same kernels, only the strides differ.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common import attention_triton as kernels
from suan.ops.common.masks import default_scale


def bias_grads(pos_bias: Tensor | None, time_bias: Tensor | None, needs: tuple[bool, bool]
               ) -> tuple[Tensor | None, Tensor | None]:
    """fp32 zero accumulators for the bias tables whose gradient is needed, else None."""
    dpos = torch.zeros(pos_bias.shape, dtype=torch.float32, device=pos_bias.device) if needs[0] else None
    dtime = torch.zeros(time_bias.shape, dtype=torch.float32, device=time_bias.device) if needs[1] else None
    return dpos, dtime


def cast_like(grad: Tensor | None, like: Tensor | None) -> Tensor | None:
    return None if grad is None else grad.to(like.dtype)


class RelAttentionFn(torch.autograd.Function):
    """Differentiable in q, k, v, pos_bias and time_bias; ``layout`` and ``max_attn_len`` are constants."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None,
                layout: kernels.Layout, max_attn_len: int) -> Tensor:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        part = kernels.dense_part(max_attn_len, layout.max_len)
        scale = default_scale(q.shape[-1])
        out = torch.empty_like(q)
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)  # [B, H, L] or [N, H]
        kernels.forward(q, k, v, layout, pos_bias, time_bias, part, scale, pointwise=False, out=out, lse=lse)
        ctx.save_for_backward(q, k, v, out, lse, pos_bias, time_bias)
        ctx.layout, ctx.part, ctx.scale = layout, part, scale
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse, pos_bias, time_bias = ctx.saved_tensors
        do = grad_out.contiguous()
        # sum_j P_ij dP_ij = do_i · out_i, the softmax-backward row constant
        delta = (do.float() * out.float()).sum(-1)  # [B, H, L] or [N, H]
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dpos, dtime = bias_grads(pos_bias, time_bias, ctx.needs_input_grad[3:5])
        kernels.backward(q, k, v, do, lse, delta, ctx.layout, pos_bias, time_bias, ctx.part, ctx.scale,
                         pointwise=False, dq=dq, dk=dk, dv=dv, dpos=dpos, dtime=dtime)
        return dq, dk, dv, cast_like(dpos, pos_bias), cast_like(dtime, time_bias), None, None


def rel_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                  pos_bias: Tensor | None, time_bias: Tensor | None, max_attn_len: int) -> Tensor:
    """Padded entry point; see ``suan.ops.rel_attention.rel_attention``.

    Args:
        q, k, v: [B, H, L, D]. lengths, num_targets: [B]. timestamps: [B, L] int64.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    kernels.check_device(q)
    layout = kernels.Layout.from_padded(lengths, num_targets, timestamps)
    return RelAttentionFn.apply(q, k, v, pos_bias, time_bias, layout, max_attn_len)


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
    kernels.check_device(q)
    layout = kernels.Layout.from_jagged(offsets, num_targets, timestamps, max_len)
    return RelAttentionFn.apply(q, k, v, pos_bias, time_bias, layout, max_attn_len)
