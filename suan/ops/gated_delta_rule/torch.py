"""Chunked path (fast CPU path and ONNX export path); the derivation is in ``README.md``.

Per chunk of ``CHUNK`` tokens (the sequence padded to a multiple with a closed-form pad), in parallel
over all chunks: the UT transform ``W = (I + A)^{-1} [diag(β) V, diag(β Γ) K]`` by forward substitution
over the CHUNK rows (a fixed count, independent of L), the intra-chunk scores ``P`` and the chunk's state
map ``S_out = S_in M + N``. The only sequential part is that map across chunks: a Python loop over the
``ceil(L / CHUNK)`` chunks in eager mode, and under ``torch.export`` / ONNX export the ``scan``
higher-order op (an ONNX ``Scan`` whose trip count is read from the input, so L stays dynamic).
Padding and candidates are identity writes (``α = 1, β = 0``), so the final carry is the state after the
history; each candidate then applies its own write to it in closed form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._higher_order_ops.scan import scan

from suan.ops.common.masks import valid_tokens
from suan.ops.common.precision import at_least_fp32

CHUNK = 16


def _forward_substitution(A: Tensor, R: Tensor) -> Tensor:
    """``(I + A)^{-1} R`` for strictly lower-triangular A [..., C, C] and R [..., C, E].

    That is ``x_i = r_i - Σ_{j<i} A_ij x_j``, computed column by column: once row j is final, its
    contribution is removed from every later row at once (column j of A is zero on and above the
    diagonal). C - 1 rank-1 updates, no growing stacks: a small graph under export.
    """
    X = R
    for j in range(A.shape[-1] - 1):
        X = X - A[..., :, j:j + 1] * X[..., j:j + 1, :]  # [..., C, 1] * [..., 1, E]
    return X


def _chunk_map(S: Tensor, maps: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """One chunk: carry S [B, H, Dv, Dk] → ``S M + N``; also emits the state entering the chunk."""
    M, N = maps
    return S @ M + N, S.clone()


def _states_entering_chunks(M: Tensor, N: Tensor) -> tuple[Tensor, Tensor]:
    """M [B, H, NC, Dk, Dk], N [B, H, NC, Dv, Dk] → (S_in [B, H, NC, Dv, Dk], S_final [B, H, Dv, Dk])."""
    S0 = torch.zeros_like(N[:, :, 0])
    if torch.compiler.is_exporting():
        # exported graphs are for inference; a scan under autograd saves symbolic sizes for its backward,
        # which the ONNX exporter's passes cannot stack (torch 2.13)
        final, S_in = scan(_chunk_map, S0.detach(), (M.detach().movedim(2, 0), N.detach().movedim(2, 0)))
        return S_in.movedim(0, 2), final  # S_in: [NC, B, H, Dv, Dk] from the scan
    S, S_in = S0, []
    for c in range(M.shape[2]):
        S, entering = _chunk_map(S, (M[:, :, c], N[:, :, c]))
        S_in.append(entering)
    return torch.stack(S_in, dim=2), S


def gated_delta_rule(q: Tensor, k: Tensor, v: Tensor, log_alpha: Tensor, beta: Tensor, *, lengths: Tensor,
                     num_targets: Tensor) -> Tensor:
    B, H, L, Dk = q.shape
    valid = valid_tokens(lengths, L).view(B, 1, L)
    hist = valid_tokens(lengths - num_targets, L).view(B, 1, L)
    q, k, v, log_alpha, beta = (at_least_fp32(t) for t in (q, k, v, log_alpha, beta))
    # padded length n_chunks * CHUNK: visibly a multiple of CHUNK to the exporter's symbolic shapes; under
    # export one spare (identity) chunk, so an example with a single chunk does not specialise the count to 1
    n_chunks = (L + CHUNK - 1) // CHUNK + int(torch.compiler.is_exporting())
    pad = n_chunks * CHUNK - L
    # [B, H, NC, C, D] and [B, H, NC, C]; explicit sizes keep NC symbolic under export (no guards on L)
    q_c, k_c, v_c = (F.pad(t, (0, 0, 0, pad)).reshape(B, H, n_chunks, CHUNK, t.shape[-1]) for t in (q, k, v))
    la_c, b_c = (F.pad(t * hist, (0, pad)).reshape(B, H, n_chunks, CHUNK) for t in (log_alpha, beta))
    g = torch.cumsum(la_c, dim=-1)  # [B, H, NC, C] log decay since the chunk start, inclusive
    causal = torch.ones(CHUNK, CHUNK, dtype=torch.bool, device=q.device).tril()
    # exp(g_t - g_j) for j <= t only (the other entries would overflow)
    decay = torch.exp(torch.where(causal, g.unsqueeze(-1) - g.unsqueeze(-2), 0.0)) * causal  # [B, H, NC, C, C]
    A = (b_c.unsqueeze(-1) * (k_c @ k_c.transpose(-1, -2)) * decay).tril(-1)
    W = _forward_substitution(A, torch.cat([b_c.unsqueeze(-1) * v_c, (b_c * g.exp()).unsqueeze(-1) * k_c], -1))
    W_v, W_k = W[..., :v.shape[-1]], W[..., v.shape[-1]:]  # [B, H, NC, C, Dv], [..., Dk]
    k_end = torch.exp(g[..., -1:] - g).unsqueeze(-1) * k_c  # [B, H, NC, C, Dk] decayed to the chunk end
    eye = torch.eye(Dk, device=q.device)
    M = g[..., -1].exp()[..., None, None] * eye - W_k.transpose(-1, -2) @ k_end  # [B, H, NC, Dk, Dk]
    N = W_v.transpose(-1, -2) @ k_end  # [B, H, NC, Dv, Dk]
    S_in, S_hist = _states_entering_chunks(M, N)
    P = (q_c @ k_c.transpose(-1, -2)) * decay  # [B, H, NC, C, C]
    o = (g.exp().unsqueeze(-1) * q_c - P @ W_k) @ S_in.transpose(-1, -2) + P @ W_v  # [B, H, NC, C, Dv]
    o = o.reshape(B, H, -1, v.shape[-1])[:, :, :L]  # [B, H, L, Dv]
    # candidates: S_c = α S_hist + β (v - α S_hist k) kᵀ applied to q, without forming S_c
    alpha = (log_alpha * valid).exp().unsqueeze(-1)  # [B, H, L, 1]
    S_q, S_k = (torch.einsum("bhvk,bhlk->bhlv", S_hist, t) for t in (q, k))  # [B, H, L, Dv]
    o_cand = alpha * S_q + (beta.unsqueeze(-1) * (k * q).sum(-1, keepdim=True)) * (v - alpha * S_k)
    out = torch.where(hist.unsqueeze(-1), o, o_cand) * valid.unsqueeze(-1).to(torch.float32)
    return out.to(v.dtype)
