"""Reference: causal linear attention as its recurrence ``S += φ(k) vᵀ, z += φ(k)``, token by token.

``init_state``/``step``/``read`` are also the O(1)-per-token recurrent form that mixers use for
incremental scoring; ``linear_attention`` loops them over every row (the ground truth).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from suan.ops.common.precision import at_least_fp32, working_dtype

# keeps the normaliser away from zero when φ(q)·z underflows (φ > 0, so it is otherwise positive)
EPS = 1e-6


def feature_map(x: Tensor) -> Tensor:
    """``φ(x) = elu(x) + 1`` > 0."""
    return F.elu(at_least_fp32(x)) + 1.0


def init_state(batch: int, heads: int, dim_k: int, dim_v: int, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Empty history: ``S`` [B, H, Dk, Dv] = sum of ``φ(k) vᵀ``, ``z`` [B, H, Dk] = sum of ``φ(k)``.

    ``dtype``: at least fp32 (the inputs' working precision).
    """
    return dict(S=torch.zeros(batch, heads, dim_k, dim_v, dtype=dtype, device=device),
                z=torch.zeros(batch, heads, dim_k, dtype=dtype, device=device))


def step(state: dict[str, Tensor], q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Append one token: q, k [B, H, Dk], v [B, H, Dv] → (o [B, H, Dv], new state)."""
    fq, fk = feature_map(q), feature_map(k)
    S = state["S"] + fk.unsqueeze(-1) * at_least_fp32(v).unsqueeze(-2)
    z = state["z"] + fk
    num = torch.einsum("bhk,bhkv->bhv", fq, S)
    return num / ((fq * z).sum(-1, keepdim=True) + EPS), dict(S=S, z=z)


def read(state: dict[str, Tensor], q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Candidates from the history state plus their own token (the state is not changed).

    Args:
        q, k: [B, H, N, Dk]. v: [B, H, N, Dv].

    Returns:
        [B, H, N, Dv].
    """
    fq, fk = feature_map(q), feature_map(k)
    own = (fq * fk).sum(-1, keepdim=True)  # [B, H, N, 1]
    num = torch.einsum("bhnk,bhkv->bhnv", fq, state["S"]) + own * at_least_fp32(v)
    den = torch.einsum("bhnk,bhk->bhn", fq, state["z"]).unsqueeze(-1) + own
    return num / (den + EPS)


def linear_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor) -> Tensor:
    B, H, L, Dk = q.shape
    Dv = v.shape[-1]
    out = torch.zeros(B, H, L, Dv, dtype=working_dtype(v), device=v.device)
    for b in range(B):
        n, n_hist = int(lengths[b]), int(lengths[b] - num_targets[b])
        state = init_state(1, H, Dk, Dv, v.device, working_dtype(v))
        for i in range(n_hist):
            o, state = step(state, q[b:b + 1, :, i], k[b:b + 1, :, i], v[b:b + 1, :, i])
            out[b, :, i] = o[0]
        if n > n_hist:
            sl = slice(n_hist, n)
            out[b, :, sl] = read(state, q[b:b + 1, :, sl], k[b:b + 1, :, sl], v[b:b + 1, :, sl])[0]
    return out.to(v.dtype)
