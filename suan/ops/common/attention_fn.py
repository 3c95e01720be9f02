"""The one autograd Function over the shared attention kernels (``attention_triton``).

Every Triton attention op here is the same computation with different *parts* of the key pattern and a
mode: biased softmax attention (``rel_attention``: one dense part), LightSUAN's local + dilated softmax
(``sparse_attention``: a local part, then a dilated part that resumes the first one's online softmax) and
HSTU's pointwise SiLU attention (``hstu_attention``: one dense part, no softmax state). The ops differ only
in the parts they pass; padded ``[B, H, L, D]`` and jagged ``[N, H, D]`` + offsets differ only in the
layout's strides.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common import attention_triton as kernels
from suan.ops.common.masks import default_scale
from suan.ops.common.precision import at_least_fp32


def _bias_grads(pos_bias: Tensor | None, time_bias: Tensor | None, needs: tuple[bool, bool]
                ) -> tuple[Tensor | None, Tensor | None]:
    """fp32 zero accumulators for the bias tables whose gradient is needed (atomic adds), else None."""
    dpos = torch.zeros(pos_bias.shape, dtype=torch.float32, device=pos_bias.device) if needs[0] else None
    dtime = torch.zeros(time_bias.shape, dtype=torch.float32, device=time_bias.device) if needs[1] else None
    return dpos, dtime


def _cast_like(grad: Tensor | None, like: Tensor | None) -> Tensor | None:
    return None if grad is None else grad.to(like.dtype)


class PartsAttentionFn(torch.autograd.Function):
    """Differentiable in q, k, v, pos_bias and time_bias; the layout, the parts and the mode are constants.

    Softmax mode: each part after the first resumes the online softmax of the one before from its
    ``(out, lse)``, so the parts form one softmax; backward runs every part with the final ``lse`` and
    ``delta`` into fp32 gradient buffers when there are several. Pointwise mode (HSTU) keeps no softmax
    state and takes one part.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None,
                layout: kernels.Layout, parts: tuple[kernels.Part, ...], pointwise: bool) -> Tensor:
        if pointwise and len(parts) != 1:
            raise ValueError(f"pointwise attention takes one part, got {len(parts)}")
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        scale = default_scale(q.shape[-1])
        out = torch.empty_like(q)
        lse = None if pointwise else torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)  # [B, H, L] | [N, H]
        state = None
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            # an earlier part's output is the next one's softmax state: kept in fp32
            dest = out if last else torch.empty(q.shape, dtype=torch.float32, device=q.device)
            kernels.forward(q, k, v, layout, pos_bias, time_bias, part, scale, pointwise=pointwise, out=dest,
                            lse=lse, init=state)
            state = dest
        ctx.save_for_backward(q, k, v, out, lse, pos_bias, time_bias)
        ctx.layout, ctx.parts, ctx.scale, ctx.pointwise = layout, parts, scale, pointwise
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse, pos_bias, time_bias = ctx.saved_tensors
        do = grad_out.contiguous()
        # sum_j P_ij dP_ij = do_i · out_i, the softmax-backward row constant (none in pointwise mode)
        delta = None if ctx.pointwise else (at_least_fp32(do) * at_least_fp32(out)).sum(-1)  # [B, H, L] or [N, H]
        dpos, dtime = _bias_grads(pos_bias, time_bias, ctx.needs_input_grad[3:5])
        # later parts add to the first part's gradients: fp32 buffers then
        dtype = q.dtype if len(ctx.parts) == 1 else torch.float32
        dq, dk, dv = (torch.empty(q.shape, dtype=dtype, device=q.device) for _ in range(3))
        for i, part in enumerate(ctx.parts):
            kernels.backward(q, k, v, do, lse, delta, ctx.layout, pos_bias, time_bias, part, ctx.scale,
                             pointwise=ctx.pointwise, dq=dq, dk=dk, dv=dv, dpos=dpos, dtime=dtime, accumulate=i > 0)
        dq, dk, dv = dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)
        return dq, dk, dv, _cast_like(dpos, pos_bias), _cast_like(dtime, time_bias), None, None, None


def parts_attention(q: Tensor, k: Tensor, v: Tensor, layout: kernels.Layout, pos_bias: Tensor | None,
                    time_bias: Tensor | None, parts: tuple[kernels.Part, ...], pointwise: bool = False) -> Tensor:
    """``PartsAttentionFn`` for every Triton attention entry point (padded or jagged ``layout``)."""
    kernels.check_device(q)
    return PartsAttentionFn.apply(q, k, v, pos_bias, time_bias, layout, tuple(parts), pointwise)
