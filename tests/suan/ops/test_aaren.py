"""aaren: the recurrence against a float64 softmax over each prefix, the cumsum path vs the recurrence on
outputs and all gradients (odd lengths, empty rows, all-candidate rows), and stability for huge scores."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from suan.ops.aaren import SCORE_CAP, aaren

# fp32 tolerances for the parallel path vs the reference (outputs and gradients)
ATOL_FP32 = 1e-5
RTOL_FP32 = 1e-4
# the reference vs a float64 brute-force definition
ATOL_DEF = 1e-5
RTOL_DEF = 1e-5

LAYOUTS = {1: ([0, 1, 1], [0, 0, 1]), 7: ([7, 0, 7, 3, 1], [2, 0, 7, 0, 1]), 33: ([33, 17, 0, 32], [1, 0, 0, 5])}


def _inputs(seed: int, seq_len: int, heads: int = 2, dim: int = 8, scale: float = 2.0) -> dict:
    lengths, targets = LAYOUTS[seq_len]
    gen = torch.Generator().manual_seed(seed)
    s = scale * torch.randn(len(lengths), heads, seq_len, generator=gen)
    v = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    return dict(s=s, v=v, lengths=torch.tensor(lengths), num_targets=torch.tensor(targets))


def _definition(s: Tensor, v: Tensor, lengths: list[int], targets: list[int]) -> Tensor:
    """float64: history token i = softmax over history 0..i; candidate = softmax over history + itself."""
    out = torch.zeros(v.shape, dtype=torch.float64)
    c = SCORE_CAP * torch.tanh(s.double() / SCORE_CAP)
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        for i in range(n):
            keys = list(range(i + 1)) if i < n - t else list(range(n - t)) + [i]
            w = torch.softmax(c[b, :, keys], dim=-1)  # [H, K]
            out[b, :, i] = torch.einsum("hk,hkd->hd", w, v[b, :, keys].double())
    return out


@pytest.mark.parametrize("seq_len", sorted(LAYOUTS))
def test_naive_matches_definition(seq_len):
    inputs = _inputs(seq_len, seq_len)
    got = aaren(**inputs, backend="naive")
    want = _definition(inputs["s"], inputs["v"], *LAYOUTS[seq_len])
    torch.testing.assert_close(got.double(), want, atol=ATOL_DEF, rtol=RTOL_DEF)


def _run(inputs: dict, backend: str, grad_out: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    leaves = {name: inputs[name].clone().requires_grad_(True) for name in ("s", "v")}
    out = aaren(**{**inputs, **leaves}, backend=backend)
    (out * grad_out).sum().backward()
    return out.detach(), {name: t.grad for name, t in leaves.items()}


@pytest.mark.parametrize("scale", [2.0, 1e4], ids=["normal", "huge"])
@pytest.mark.parametrize("seq_len", sorted(LAYOUTS))
def test_torch_matches_naive_outputs_and_grads(seq_len, scale):
    inputs = _inputs(seq_len + 1, seq_len, scale=scale)
    grad_out = torch.randn(inputs["v"].shape, generator=torch.Generator().manual_seed(seq_len))
    ref_out, ref_grads = _run(inputs, "naive", grad_out)
    out, grads = _run(inputs, "torch", grad_out)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref_out, atol=ATOL_FP32, rtol=RTOL_FP32)
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, ref_grads[name], atol=ATOL_FP32, rtol=RTOL_FP32, msg=name)
    for b, n in enumerate(inputs["lengths"].tolist()):
        assert torch.all(out[b, :, n:] == 0) and torch.all(ref_out[b, :, n:] == 0), f"row {b}: padding not zero"
