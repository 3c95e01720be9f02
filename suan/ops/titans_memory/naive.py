"""Reference: the memory recurrence run step by step (a Python loop over positions), one state per query."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import attention_mask, positions, valid_tokens
from suan.ops.common.precision import at_least_fp32


def titans_memory(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, lr: Tensor,
                  init: Tensor, log_decay: Tensor, log_ratio: Tensor, max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    dtype = q.dtype
    q, k, v, lr, init = at_least_fp32(q), at_least_fp32(k), at_least_fp32(v), at_least_fp32(lr), at_least_fp32(init)
    alpha = at_least_fp32(log_decay).exp().view(1, 1, H, 1, 1)
    eta = alpha * at_least_fp32(log_ratio).exp().view(1, 1, H, 1, 1)
    # the update each token would write: theta_s (v_s - init k_s) k_s^T
    error = v - torch.einsum("hde,bhse->bhsd", init, k)  # [B, H, L, D]
    writes = lr.unsqueeze(-1).unsqueeze(-1) * error.unsqueeze(-1) * k.unsqueeze(-2)  # [B, H, L, D, D]
    sees = attention_mask(lengths, num_targets, L, max_attn_len)  # [B, L, L] which writes a query reads
    pos = positions(lengths, num_targets, L)  # [B, L]
    t = torch.arange(L, device=q.device)
    memory = init.expand(B, L, H, D, D)  # one state per (row, query)
    momentum = torch.zeros(B, L, H, D, D, device=q.device)
    for r in range(L):
        active = (r <= pos).view(B, L, 1, 1, 1)
        # the token written at position r: history token r, or at the query's own position the query itself
        source = torch.where(pos == r, t, torch.full_like(t, r))  # [B, L]
        write = writes.permute(0, 2, 1, 3, 4).gather(1, source.view(B, L, 1, 1, 1).expand(B, L, H, D, D))
        write = write * torch.gather(sees, 2, source.unsqueeze(-1)).view(B, L, 1, 1, 1)
        momentum = torch.where(active, eta * momentum + write, momentum)
        memory = torch.where(active, alpha * memory + momentum, memory)
    out = torch.einsum("blhde,bhle->bhld", memory, q)  # [B, H, L, D]
    return (out * valid_tokens(lengths, L).view(B, 1, L, 1)).to(dtype)
