"""hstu_attention: the reference against an explicit loop definition, backends on outputs and all gradients."""

from __future__ import annotations

import math

import pytest
import torch

from suan.ops.common.masks import TIME_BUCKETS
from suan.ops.hstu_attention import hstu_attention

# fp32 tolerances for a backend vs the reference (outputs and gradients)
ATOL_FP32 = 1e-5
RTOL_FP32 = 1e-4
# the reference vs an explicit float64 python loop of the definition
ATOL_LOOP = 1e-5
RTOL_LOOP = 1e-5


def _ref_bucket(dt: int) -> int:
    return min(max(math.floor(math.log(max(abs(dt), 1)) / 0.301), 0), TIME_BUCKETS - 1)


def _allowed(i: int, j: int, n: int, n_hist: int, max_attn_len: int) -> bool:
    """The layout contract for one valid query ``i < n`` and key ``j``."""
    if i < n_hist:
        return j <= i and (max_attn_len == 0 or i - j < max_attn_len)
    return i == j or (j < n_hist and (max_attn_len == 0 or n_hist - j < max_attn_len))


def _loop_hstu(inputs: dict, max_attn_len: int) -> torch.Tensor:
    """``out_i = sum_j SiLU(q_i·k_j / sqrt(D) + bias_ij) v_j / (n_hist + 1)`` over allowed j, float64."""
    q, k, v = (inputs[n].double() for n in ("q", "k", "v"))
    batch, heads, seq_len, dim = q.shape
    pos_bias, time_bias, ts = inputs["pos_bias"], inputs["time_bias"], inputs["timestamps"].tolist()
    out = torch.zeros_like(q)
    for b in range(batch):
        n = int(inputs["lengths"][b])
        n_hist = n - int(inputs["num_targets"][b])
        for i in range(n):
            for j in range(seq_len):
                if not _allowed(i, j, n, n_hist, max_attn_len):
                    continue
                bias = 0.0
                if pos_bias is not None:
                    gap = min(i, n_hist) - min(j, n_hist)
                    bias += float(pos_bias[min(max(gap, 0), pos_bias.shape[0] - 1)])
                if time_bias is not None:
                    bias += float(time_bias[_ref_bucket(ts[b][i] - ts[b][j])])
                for h in range(heads):
                    s = float(q[b, h, i] @ k[b, h, j]) / math.sqrt(dim) + bias
                    out[b, h, i] += s / (1.0 + math.exp(-s)) / (n_hist + 1) * v[b, h, j]
    return out


def _inputs(seed: int, lengths: list[int], targets: list[int], seq_len: int, heads: int, dim: int,
            pos: bool, time: bool, max_time: int = 10**7) -> dict:
    gen = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    q, k, v = (torch.randn(batch, heads, seq_len, dim, generator=gen) for _ in range(3))
    return dict(q=q, k=k, v=v, lengths=torch.tensor(lengths), num_targets=torch.tensor(targets),
                timestamps=torch.randint(0, max_time, (batch, seq_len), generator=gen),
                pos_bias=torch.randn(max(seq_len // 2, 1) + 1, generator=gen) if pos else None,
                time_bias=torch.randn(TIME_BUCKETS, generator=gen) if time else None)


@pytest.mark.parametrize("max_attn_len", [0, 2])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_naive_matches_loop_definition(bias, max_attn_len):
    # timestamps within 0..1000 keep every bucket far from an edge of the fp32 log
    inputs = _inputs(5, [6, 0, 1, 5, 3], [2, 0, 1, 5, 0], 7, 2, 4, bias, bias, max_time=1000)
    got = hstu_attention(**inputs, max_attn_len=max_attn_len, backend="naive")
    torch.testing.assert_close(got.double(), _loop_hstu(inputs, max_attn_len), atol=ATOL_LOOP, rtol=RTOL_LOOP)


def _run(inputs: dict, backend: str, max_attn_len: int, grad_out: torch.Tensor):
    leaves = {name: t.clone().requires_grad_(True) for name, t in inputs.items()
              if name in ("q", "k", "v", "pos_bias", "time_bias") and t is not None}
    out = hstu_attention(**{**inputs, **leaves}, max_attn_len=max_attn_len, backend=backend)
    (out * grad_out).sum().backward()
    return out.detach(), {name: t.grad for name, t in leaves.items()}


SHAPES = [(1, 1, 8), (7, 3, 16), (63, 3, 8), (63, 1, 16)]
CASES = [(s, bias, w) for s in SHAPES for bias in (False, True) for w in (0, 5)]


@pytest.mark.parametrize(("shape", "bias", "max_attn_len"), CASES,
                         ids=[f"L{s[0]}-H{s[1]}-D{s[2]}-{'bias' if b else 'nobias'}-w{w}" for s, b, w in CASES])
def test_torch_matches_naive_outputs_and_grads(shape, bias, max_attn_len):
    seq_len, heads, dim = shape
    gen = torch.Generator().manual_seed(seq_len + heads + dim)
    # an empty row, a length-1 row, an all-candidate row and a random one
    n = int(torch.randint(0, seq_len + 1, (1,), generator=gen))
    lengths, targets = [0, 1, seq_len, n], [0, int(seq_len > 1), seq_len, n // 2]
    inputs = _inputs(seq_len * dim, lengths, targets, seq_len, heads, dim, bias, bias)
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    ref_out, ref_grads = _run(inputs, "naive", max_attn_len, grad_out)
    out, grads = _run(inputs, "torch", max_attn_len, grad_out)
    for b, length in enumerate(lengths):
        assert torch.all(out[b, :, length:] == 0), f"row {b}: padded output is not exactly zero"
    torch.testing.assert_close(out, ref_out, atol=ATOL_FP32, rtol=RTOL_FP32)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=ATOL_FP32, rtol=RTOL_FP32, msg=name)


def test_auto_on_cpu_equals_reference():
    inputs = _inputs(0, [4, 1], [1, 0], 4, 2, 8, True, True)
    assert torch.equal(hstu_attention(**inputs, backend="auto"), hstu_attention(**inputs, backend="naive"))


def test_bad_backends_raise():
    inputs = _inputs(0, [2], [1], 2, 1, 8, False, False)
    with pytest.raises(ValueError, match="unknown backend 'flash'"):
        hstu_attention(**inputs, backend="flash")
