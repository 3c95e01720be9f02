"""Fast CPU path and ONNX export path: the closed form of the memory as one masked [B, H, L, L] product.

``y_t = alpha^(p_t + 1)·init q_t + sum_s mask(t, s)·w_h(p_t - p_s)·theta_s·(k_s·q_t)·(v_s - init k_s)``;
the kernel ``w(g) = alpha^g·cumsum_r(rho^r)`` over ``g = 0..L-1`` is a cumsum on an arange of the
(symbolic) L, so an exported graph keeps L dynamic. Cost O(B·H·L²·D), like causal linear attention's
parallel form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import attention_mask, positions, valid_tokens
from suan.ops.common.precision import at_least_fp32


def gap_kernel(log_decay: Tensor, log_ratio: Tensor, seq_len: int) -> Tensor:
    """``w_h(g) = sum_{r <= g} alpha^(g - r)·eta^r`` with ``eta = alpha·rho``, for ``g = 0..L-1``.

    Returns:
        [H, L] fp32.
    """
    g = torch.arange(seq_len, device=log_decay.device, dtype=torch.float32)  # [L]
    ratio_powers = torch.exp(g * at_least_fp32(log_ratio).unsqueeze(-1))  # [H, L] rho^r
    return torch.exp(g * at_least_fp32(log_decay).unsqueeze(-1)) * ratio_powers.cumsum(dim=-1)


def titans_memory(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, lr: Tensor,
                  init: Tensor, log_decay: Tensor, log_ratio: Tensor, max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    pos = positions(lengths, num_targets, L)  # [B, L]
    gap = (pos.unsqueeze(2) - pos.unsqueeze(1)).clamp(min=0)  # [B, L, L]
    kernel = gap_kernel(log_decay, log_ratio, L)  # [H, L]
    weight = kernel.index_select(1, gap.reshape(-1)).view(H, B, L, L).transpose(0, 1)  # [B, H, L, L]
    mask = attention_mask(lengths, num_targets, L, max_attn_len).unsqueeze(1)  # [B, 1, L, L]
    scores = at_least_fp32(q @ k.transpose(-1, -2)) * weight * at_least_fp32(lr).unsqueeze(2)  # [B, H, L, L]
    scores = scores * mask.to(scores.dtype)
    error = v - torch.einsum("hde,bhse->bhsd", init.to(k.dtype), k)  # [B, H, L, D]
    decayed = torch.exp((pos + 1).unsqueeze(1).float() * at_least_fp32(log_decay).view(1, H, 1))  # [B, H, L]
    initial = torch.einsum("hde,bhle->bhld", init.to(q.dtype), q) * decayed.unsqueeze(-1).to(q.dtype)
    out = torch.matmul(scores.to(error.dtype), error) + initial  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
