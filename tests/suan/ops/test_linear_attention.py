"""linear_attention: the recurrence against a float64 O(L²) definition, the chunked path vs the recurrence
on outputs and all gradients (lengths across chunk boundaries, empty rows, all-candidate rows)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from suan.ops.linear_attention import linear_attention
from suan.ops.linear_attention.torch import CHUNK

# fp32 tolerances for the chunked path vs the reference (outputs and gradients)
ATOL_FP32 = 1e-5
RTOL_FP32 = 1e-4
# the reference vs a float64 brute-force definition
ATOL_DEF = 1e-5
RTOL_DEF = 1e-5
EPS = 1e-6

LAYOUTS = {1: ([0, 1, 1], [0, 0, 1]), 7: ([7, 0, 7, 3], [2, 0, 7, 1]),
           CHUNK + 1: ([CHUNK + 1, CHUNK, 0, 5], [1, 0, 0, 5]), 2 * CHUNK + 3: ([2 * CHUNK + 3, CHUNK + 2], [4, 0])}


def _inputs(seed: int, seq_len: int, heads: int = 2, dim_k: int = 8, dim_v: int = 4) -> dict:
    lengths, targets = LAYOUTS[seq_len]
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(len(lengths), heads, seq_len, dim_k, generator=gen) for _ in range(2))
    v = torch.randn(len(lengths), heads, seq_len, dim_v, generator=gen)
    return dict(q=q, k=k, v=v, lengths=torch.tensor(lengths), num_targets=torch.tensor(targets))


def _definition(q: Tensor, k: Tensor, v: Tensor, lengths: list[int], targets: list[int]) -> Tensor:
    """float64: ``Σ_j φ(q_i)·φ(k_j) v_j / (Σ_j φ(q_i)·φ(k_j) + eps)`` over the keys token i sees."""
    fq, fk = F.elu(q.double()) + 1, F.elu(k.double()) + 1
    out = torch.zeros(v.shape, dtype=torch.float64)
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        for i in range(n):
            keys = list(range(i + 1)) if i < n - t else list(range(n - t)) + [i]
            w = torch.einsum("hd,hkd->hk", fq[b, :, i], fk[b, :, keys])  # [H, K]
            out[b, :, i] = torch.einsum("hk,hkd->hd", w, v[b, :, keys].double()) / (w.sum(-1, keepdim=True) + EPS)
    return out


@pytest.mark.parametrize("seq_len", sorted(LAYOUTS))
def test_naive_matches_definition(seq_len):
    inputs = _inputs(seq_len, seq_len)
    got = linear_attention(**inputs, backend="naive")
    want = _definition(inputs["q"], inputs["k"], inputs["v"], *LAYOUTS[seq_len])
    torch.testing.assert_close(got.double(), want, atol=ATOL_DEF, rtol=RTOL_DEF)


def _run(inputs: dict, backend: str, grad_out: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    leaves = {name: inputs[name].clone().requires_grad_(True) for name in ("q", "k", "v")}
    out = linear_attention(**{**inputs, **leaves}, backend=backend)
    (out * grad_out).sum().backward()
    return out.detach(), {name: t.grad for name, t in leaves.items()}


@pytest.mark.parametrize("seq_len", sorted(LAYOUTS))
def test_torch_matches_naive_outputs_and_grads(seq_len):
    inputs = _inputs(seq_len + 1, seq_len)
    grad_out = torch.randn(inputs["v"].shape, generator=torch.Generator().manual_seed(seq_len))
    ref_out, ref_grads = _run(inputs, "naive", grad_out)
    out, grads = _run(inputs, "torch", grad_out)
    torch.testing.assert_close(out, ref_out, atol=ATOL_FP32, rtol=RTOL_FP32)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=ATOL_FP32, rtol=RTOL_FP32, msg=name)
    for b, n in enumerate(inputs["lengths"].tolist()):
        assert torch.all(out[b, :, n:] == 0) and torch.all(ref_out[b, :, n:] == 0), f"row {b}: padding not zero"
