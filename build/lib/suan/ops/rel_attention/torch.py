"""Fast CPU path and ONNX export path: SDPA with the bias and mask folded into one float mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from suan.ops.common.masks import attention_mask, relative_bias, valid_tokens


def rel_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                  pos_bias: Tensor | None, time_bias: Tensor | None, max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    mask = attention_mask(lengths, num_targets, L, max_attn_len)  # [B, L, L]
    neg = torch.finfo(q.dtype).min
    float_mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, neg)
    bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)
    if bias is not None:
        float_mask = float_mask + bias.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask.unsqueeze(1))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
