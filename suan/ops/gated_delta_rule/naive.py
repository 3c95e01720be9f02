"""Reference: the gated delta rule as its recurrence, one token at a time, and the candidate read.

``S_t = α_t S_{t-1} (I - β_t k_t k_tᵀ) + β_t v_t k_tᵀ``, ``o_t = S_t q_t`` with ``S`` [Dv, Dk]. Written as
``S_t = α_t S_{t-1} + β_t (v_t - α_t S_{t-1} k_t) k_tᵀ``. ``init_state``/``step``/``read`` are also the
O(1)-per-token recurrent form that mixers use for incremental scoring.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.precision import at_least_fp32, working_dtype


def init_state(batch: int, heads: int, dim_k: int, dim_v: int, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Empty history: ``S`` [B, H, Dv, Dk] zeros, ``dtype`` at least fp32."""
    return dict(S=torch.zeros(batch, heads, dim_v, dim_k, dtype=dtype, device=device))


def _update(S: Tensor, k: Tensor, v: Tensor, log_alpha: Tensor, beta: Tensor) -> Tensor:
    """One delta-rule write: S [..., Dv, Dk], k [..., Dk], v [..., Dv], log_alpha and beta [...]."""
    alpha = torch.exp(at_least_fp32(log_alpha)).unsqueeze(-1)  # [..., 1]
    S_k = alpha * torch.einsum("...vk,...k->...v", S, at_least_fp32(k))  # α S k, [..., Dv]
    delta = at_least_fp32(beta).unsqueeze(-1) * (at_least_fp32(v) - S_k)  # [..., Dv]
    return alpha.unsqueeze(-1) * S + delta.unsqueeze(-1) * at_least_fp32(k).unsqueeze(-2)


def step(state: dict[str, Tensor], q: Tensor, k: Tensor, v: Tensor, log_alpha: Tensor,
         beta: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Append one token: q, k [B, H, Dk], v [B, H, Dv], log_alpha, beta [B, H] → (o [B, H, Dv], new state)."""
    S = _update(state["S"], k, v, log_alpha, beta)
    return torch.einsum("bhvk,bhk->bhv", S, at_least_fp32(q)), dict(S=S)


def read(state: dict[str, Tensor], q: Tensor, k: Tensor, v: Tensor, log_alpha: Tensor, beta: Tensor) -> Tensor:
    """Candidates from the history state plus their own write (the state is not changed).

    Args:
        q, k: [B, H, N, Dk]. v: [B, H, N, Dv]. log_alpha, beta: [B, H, N].

    Returns:
        [B, H, N, Dv].
    """
    S = _update(state["S"].unsqueeze(2), k, v, log_alpha, beta)  # [B, H, N, Dv, Dk]
    return torch.einsum("bhnvk,bhnk->bhnv", S, at_least_fp32(q))


def gated_delta_rule(q: Tensor, k: Tensor, v: Tensor, log_alpha: Tensor, beta: Tensor, *, lengths: Tensor,
                     num_targets: Tensor) -> Tensor:
    B, H, L, Dk = q.shape
    Dv = v.shape[-1]
    out = torch.zeros(B, H, L, Dv, dtype=working_dtype(v), device=v.device)
    for b in range(B):
        n, n_hist = int(lengths[b]), int(lengths[b] - num_targets[b])
        state = init_state(1, H, Dk, Dv, v.device, working_dtype(v))
        for i in range(n_hist):
            o, state = step(state, q[b:b + 1, :, i], k[b:b + 1, :, i], v[b:b + 1, :, i],
                            log_alpha[b:b + 1, :, i], beta[b:b + 1, :, i])
            out[b, :, i] = o[0]
        if n > n_hist:
            sl = slice(n_hist, n)
            out[b, :, sl] = read(state, q[b:b + 1, :, sl], k[b:b + 1, :, sl], v[b:b + 1, :, sl],
                                 log_alpha[b:b + 1, :, sl], beta[b:b + 1, :, sl])[0]
    return out.to(v.dtype)
