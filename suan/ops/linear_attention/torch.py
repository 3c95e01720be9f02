"""Chunked parallel path (fast CPU path and ONNX export path).

The sequence is padded to a multiple of ``CHUNK`` (the pad is a closed form of L, so the graph keeps L
dynamic). Inside a chunk the causal part is a masked ``φ(q) φ(k)ᵀ`` product; across chunks the state
entering each chunk is an exclusive cumsum of the per-chunk ``φ(k)ᵀ v``. Only history tokens write to
the state; a candidate adds its own ``φ(k) vᵀ`` to the full-history state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from suan.ops.common.masks import valid_tokens
from suan.ops.common.precision import at_least_fp32
from suan.ops.linear_attention.naive import EPS, feature_map

CHUNK = 16


def _exclusive_cumsum(t: Tensor, dim: int) -> Tensor:
    """Sum of the entries strictly before each index along ``dim`` (a zero slice shifted in)."""
    total = torch.cumsum(t, dim=dim)
    return torch.cat([torch.zeros_like(total.narrow(dim, 0, 1)), total.narrow(dim, 0, t.shape[dim] - 1)], dim)


def linear_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor) -> Tensor:
    B, H, L, Dk = q.shape
    valid = valid_tokens(lengths, L).view(B, 1, L, 1)
    hist = valid_tokens(lengths - num_targets, L).view(B, 1, L, 1).to(torch.float32)
    fq, fk = feature_map(q), feature_map(k)  # [B, H, L, Dk]
    fk_hist = fk * hist
    own = (fq * fk).sum(-1, keepdim=True) * (valid.to(torch.float32) - hist)  # [B, H, L, 1] candidates only
    # padded length n_chunks * CHUNK: visibly a multiple of CHUNK to the exporter's symbolic shapes
    n_chunks = (L + CHUNK - 1) // CHUNK
    pad = n_chunks * CHUNK - L
    # [B, H, NC, C, D]; explicit sizes keep NC symbolic under export (no guards on L)
    fq_c, fk_c, v_c = (F.pad(t, (0, 0, 0, pad)).reshape(B, H, n_chunks, CHUNK, t.shape[-1])
                       for t in (fq, fk_hist, at_least_fp32(v)))
    causal = torch.ones(CHUNK, CHUNK, dtype=torch.bool, device=q.device).tril()
    scores = (fq_c @ fk_c.transpose(-1, -2)) * causal  # [B, H, NC, C, C]
    S_in = _exclusive_cumsum(fk_c.transpose(-1, -2) @ v_c, dim=2)  # [B, H, NC, Dk, Dv] state entering a chunk
    z_in = _exclusive_cumsum(fk_c.sum(-2), dim=2)  # [B, H, NC, Dk]
    num = scores @ v_c + fq_c @ S_in  # [B, H, NC, C, Dv]
    den = scores.sum(-1, keepdim=True) + fq_c @ z_in.unsqueeze(-1)  # [B, H, NC, C, 1]
    num = num.reshape(B, H, -1, num.shape[-1])[:, :, :L] + own * at_least_fp32(v)  # [B, H, L, Dv]
    den = den.reshape(B, H, -1, 1)[:, :, :L] + own
    return (num / (den + EPS) * valid.to(torch.float32)).to(v.dtype)
