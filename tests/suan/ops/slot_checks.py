"""Shared helpers of the sparse / hierarchical op tests: layouts, inputs, outputs with all gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import TIME_BUCKETS

# fp32 tolerances for fast path vs reference (outputs and gradients)
ATOL_FP32 = 1e-5
RTOL_FP32 = 1e-4
GRAD_NAMES = ("q", "k", "v", "pos_bias", "time_bias")


def random_layout(gen: torch.Generator, batch: int, seq_len: int) -> tuple[list[int], list[int]]:
    """Lengths with an empty row, a length-1 row, a full all-candidate row and random ones."""
    lengths = [0, min(1, seq_len), seq_len] + torch.randint(0, seq_len + 1, (batch,), generator=gen).tolist()
    targets = [n if r == 2 else int(torch.randint(0, n + 1, (1,), generator=gen)) for r, n in enumerate(lengths)]
    return lengths, targets


def make_inputs(seed: int, lengths: list[int], targets: list[int], seq_len: int, heads: int, dim: int,
                bias: bool = True) -> dict:
    """q, k, v [B, H, L, D], increasing timestamps (candidates at one time), a short position table."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    q, k, v = (torch.randn(batch, heads, seq_len, dim, generator=gen) for _ in range(3))
    pos_bias = torch.randn(max(seq_len // 2, 1) + 1, generator=gen) if bias else None
    time_bias = torch.randn(TIME_BUCKETS, generator=gen) if bias else None
    timestamps = torch.randint(1, 5000, (batch, seq_len), generator=gen).cumsum(dim=1)
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        if t and n > t:
            timestamps[b, n - t:n] = timestamps[b, n - t - 1] + 7
    return dict(q=q, k=k, v=v, lengths=torch.tensor(lengths, dtype=torch.int64),
                num_targets=torch.tensor(targets, dtype=torch.int64), timestamps=timestamps,
                pos_bias=pos_bias, time_bias=time_bias)


def run_with_grads(fn, inputs: dict, grad_out: Tensor, names=GRAD_NAMES, **kwargs) -> tuple[Tensor, dict]:
    """Output and the gradients of the named inputs for ``sum(out * grad_out)``."""
    leaves = {n: inputs[n].clone().requires_grad_(True) for n in names if inputs.get(n) is not None}
    out = fn(**{**inputs, **leaves}, **kwargs)
    (out.float() * grad_out).sum().backward()
    return out.detach(), {n: t.grad for n, t in leaves.items()}


def check_close(got: tuple, want: tuple, atol: float = ATOL_FP32, rtol: float = RTOL_FP32) -> None:
    (out, grads), (ref_out, ref_grads) = got, want
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=rtol)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, ref_grads[name], atol=atol, rtol=rtol, msg=name)


def check_padding_zero(out: Tensor, lengths: Tensor) -> None:
    """out [B, H, L, D]: exactly zero beyond each row's length."""
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[b, :, n:] == 0), f"row {b}: padded output is not exactly zero"


def brute_query_positions(n: int, t: int, seq_len: int) -> list[int | None]:
    """Position of every token of a row: ``i`` for history, ``n_hist`` for candidates, None when padded."""
    n_hist = n - t
    return [min(i, n_hist) if i < n else None for i in range(seq_len)]
