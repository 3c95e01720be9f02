"""gated_delta_rule: the recurrence against the float64 matrix definition, the chunked path vs the
recurrence on outputs and all gradients (lengths across chunk boundaries, empty and all-candidate rows,
strong decay), the forward substitution against a triangular solve, and the export-time scan path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from suan.ops.gated_delta_rule import gated_delta_rule
from suan.ops.gated_delta_rule import torch as torch_path
from suan.ops.gated_delta_rule.torch import CHUNK

# fp32 tolerances for the chunked path vs the reference (outputs and gradients)
ATOL_FP32 = 1e-5
RTOL_FP32 = 1e-4
# the reference vs a float64 brute-force definition
ATOL_DEF = 1e-5
RTOL_DEF = 1e-5

LAYOUTS = {1: ([0, 1, 1], [0, 0, 1]), 7: ([7, 0, 7, 3], [2, 0, 7, 1]),
           CHUNK + 1: ([CHUNK + 1, CHUNK, 0, 5], [1, 0, 0, 5]), 2 * CHUNK + 3: ([2 * CHUNK + 3, CHUNK + 2], [4, 0])}
GRAD_NAMES = ("q", "k", "v", "log_alpha", "beta")


def _inputs(seed: int, seq_len: int, heads: int = 2, dim_k: int = 8, dim_v: int = 4, decay: float = 1.0) -> dict:
    lengths, targets = LAYOUTS[seq_len]
    gen = torch.Generator().manual_seed(seed)
    B = len(lengths)
    q, k = (F.normalize(torch.randn(B, heads, seq_len, dim_k, generator=gen), dim=-1) for _ in range(2))
    v = torch.randn(B, heads, seq_len, dim_v, generator=gen)
    log_alpha = -decay * torch.rand(B, heads, seq_len, generator=gen)
    beta = torch.rand(B, heads, seq_len, generator=gen)
    return dict(q=q, k=k, v=v, log_alpha=log_alpha, beta=beta, lengths=torch.tensor(lengths),
                num_targets=torch.tensor(targets))


def _definition(inputs: dict) -> Tensor:
    """float64, literally ``S_t = α_t S_{t-1} (I - β_t k_t k_tᵀ) + β_t v_t k_tᵀ``, ``o_t = S_t q_t``."""
    q, k, v, la, beta = (inputs[name].double() for name in GRAD_NAMES)
    B, H, L, Dk = q.shape
    out = torch.zeros(v.shape, dtype=torch.float64)
    eye = torch.eye(Dk, dtype=torch.float64)
    for b, (n, t) in enumerate(zip(inputs["lengths"].tolist(), inputs["num_targets"].tolist(), strict=True)):
        for h in range(H):
            S = torch.zeros(v.shape[-1], Dk, dtype=torch.float64)

            def write(S, i, b=b, h=h):
                kk = k[b, h, i]
                alpha, bt = la[b, h, i].exp(), beta[b, h, i]
                return alpha * S @ (eye - bt * torch.outer(kk, kk)) + bt * torch.outer(v[b, h, i], kk)

            for i in range(n - t):
                S = write(S, i)
                out[b, h, i] = S @ q[b, h, i]
            for i in range(n - t, n):
                out[b, h, i] = write(S, i) @ q[b, h, i]
    return out


@pytest.mark.parametrize("seq_len", sorted(LAYOUTS))
def test_naive_matches_definition(seq_len):
    inputs = _inputs(seq_len, seq_len)
    torch.testing.assert_close(gated_delta_rule(**inputs, backend="naive").double(), _definition(inputs),
                               atol=ATOL_DEF, rtol=RTOL_DEF)


def _run(inputs: dict, backend: str, grad_out: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    leaves = {name: inputs[name].clone().requires_grad_(True) for name in GRAD_NAMES}
    out = gated_delta_rule(**{**inputs, **leaves}, backend=backend)
    (out * grad_out).sum().backward()
    return out.detach(), {name: t.grad for name, t in leaves.items()}


@pytest.mark.parametrize("decay", [1.0, 30.0], ids=["decay1", "decay30"])
@pytest.mark.parametrize("seq_len", sorted(LAYOUTS))
def test_torch_matches_naive_outputs_and_grads(seq_len, decay):
    inputs = _inputs(seq_len + 1, seq_len, decay=decay)
    grad_out = torch.randn(inputs["v"].shape, generator=torch.Generator().manual_seed(seq_len))
    ref_out, ref_grads = _run(inputs, "naive", grad_out)
    out, grads = _run(inputs, "torch", grad_out)
    torch.testing.assert_close(out, ref_out, atol=ATOL_FP32, rtol=RTOL_FP32)
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, ref_grads[name], atol=ATOL_FP32, rtol=RTOL_FP32, msg=name)
    for b, n in enumerate(inputs["lengths"].tolist()):
        assert torch.all(out[b, :, n:] == 0) and torch.all(ref_out[b, :, n:] == 0), f"row {b}: padding not zero"


def test_forward_substitution_matches_triangular_solve():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(3, CHUNK, CHUNK, generator=gen).tril(-1) * 0.3
    R = torch.randn(3, CHUNK, 5, generator=gen)
    want = torch.linalg.solve_triangular(torch.eye(CHUNK) + A, R, upper=False, unitriangular=True)
    torch.testing.assert_close(torch_path._forward_substitution(A, R), want, atol=ATOL_FP32, rtol=RTOL_FP32)


def test_export_scan_path_matches_eager_loop(monkeypatch):
    inputs = _inputs(5, 2 * CHUNK + 3)
    want = gated_delta_rule(**inputs, backend="torch")
    # the branch torch.export takes: the scan higher-order op and one spare chunk
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    torch.testing.assert_close(gated_delta_rule(**inputs, backend="torch"), want, atol=ATOL_FP32, rtol=RTOL_FP32)
