"""Reference: Aaren's ``(m, u, w)`` recurrence one token at a time, and the candidate read from a state.

``init_state``/``step``/``read`` are also the O(1)-per-token recurrent form that mixers use for
incremental scoring; ``aaren`` loops them over every row (the ground truth for the parallel path).
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.precision import at_least_fp32, working_dtype

# scores are soft-capped to (-SCORE_CAP, SCORE_CAP): exp(s - SCORE_CAP) then never overflows nor leaves the
# normal fp32 range (e^-60 ~ 1e-26), so the parallel path can subtract the constant bound as its global max
SCORE_CAP = 30.0


def soft_cap(s: Tensor) -> Tensor:
    """``SCORE_CAP * tanh(s / SCORE_CAP)``: the identity for small scores, bounded for large ones."""
    return SCORE_CAP * torch.tanh(s / SCORE_CAP)


def init_state(batch: int, heads: int, dim: int, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Empty history: ``m`` [B, H] running max (starts at the cap's lower bound), ``u`` [B, H] = sum of
    ``exp(s - m)``, ``w`` [B, H, D] = sum of ``exp(s - m) v``. ``dtype`` at least fp32."""
    return dict(m=torch.full((batch, heads), -SCORE_CAP, dtype=dtype, device=device),
                u=torch.zeros(batch, heads, dtype=dtype, device=device),
                w=torch.zeros(batch, heads, dim, dtype=dtype, device=device))


def step(state: dict[str, Tensor], s: Tensor, v: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Append one token.

    Args:
        state: from :func:`init_state` or a previous step.
        s: [B, H] raw score of the learned query against the token's key.
        v: [B, H, D] the token's value.

    Returns:
        ``o`` [B, H, D] = softmax-weighted mean of the values so far, and the new state.
    """
    s = soft_cap(at_least_fp32(s))
    # the output does not depend on m (it cancels), so no gradient flows through the running max
    m = torch.maximum(state["m"], s).detach()
    decay, e = torch.exp(state["m"] - m), torch.exp(s - m)  # [B, H]
    u = state["u"] * decay + e
    w = state["w"] * decay.unsqueeze(-1) + e.unsqueeze(-1) * at_least_fp32(v)
    return w / u.unsqueeze(-1), dict(m=m, u=u, w=w)


def read(state: dict[str, Tensor], s: Tensor, v: Tensor) -> Tensor:
    """Candidates: each reads the history state plus its own token only (the state is not changed).

    Args:
        state: the state after the history.
        s: [B, H, N] raw candidate scores.
        v: [B, H, N, D] candidate values.

    Returns:
        [B, H, N, D].
    """
    s = soft_cap(at_least_fp32(s))
    m0 = state["m"].unsqueeze(-1)  # [B, H, 1]
    m = torch.maximum(m0, s).detach()  # [B, H, N]
    decay, e = torch.exp(m0 - m), torch.exp(s - m)
    num = state["w"].unsqueeze(2) * decay.unsqueeze(-1) + e.unsqueeze(-1) * at_least_fp32(v)  # [B, H, N, D]
    return num / (state["u"].unsqueeze(-1) * decay + e).unsqueeze(-1)


def aaren(s: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor) -> Tensor:
    B, H, L, D = v.shape
    out = torch.zeros(B, H, L, D, dtype=working_dtype(v), device=v.device)
    for b in range(B):
        n, n_hist = int(lengths[b]), int(lengths[b] - num_targets[b])
        state = init_state(1, H, D, v.device, working_dtype(v))
        for i in range(n_hist):
            o, state = step(state, s[b:b + 1, :, i], v[b:b + 1, :, i])
            out[b, :, i] = o[0]
        if n > n_hist:
            out[b, :, n_hist:n] = read(state, s[b:b + 1, :, n_hist:n], v[b:b + 1, :, n_hist:n])[0]
    return out.to(v.dtype)
