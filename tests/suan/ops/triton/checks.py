"""Shared helpers of the Triton kernel tests: layouts, inputs, padded <-> jagged, outputs with all gradients."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from suan.ops.common.masks import TIME_BUCKETS

pytest.importorskip("triton", reason="triton is not installed (e.g. macOS): the Triton kernels cannot run here")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
GRAD_NAMES = ("q", "k", "v", "pos_bias", "time_bias")
BIASES = {"nobias": (False, False), "pos": (True, False), "time": (False, True), "both": (True, True)}


def layout(seed: int, seq_len: int) -> tuple[list[int], list[int]]:
    """Rows: empty, length 1, full and all candidates, odd length with candidates, random (a share candidates)."""
    gen = torch.Generator().manual_seed(seed)
    odd = max(seq_len - 2 if seq_len % 2 else seq_len - 1, 0)
    rand = int(torch.randint(0, seq_len + 1, (1,), generator=gen))
    lengths = [0, min(1, seq_len), seq_len, odd, rand]
    targets = [0, 0, seq_len, min(3, odd), int(torch.randint(0, rand // 2 + 1, (1,), generator=gen))]
    return lengths, targets


def make_inputs(seed: int, lengths: list[int], targets: list[int], seq_len: int, heads: int, dim: int,
                bias: str = "both", dtype: torch.dtype = torch.float32, device: str = DEVICE) -> dict:
    """q, k, v [B, H, L, D]; increasing timestamps [B, L] with candidates at one impression time; a short
    position table (the gap clamp is exercised) and a time table (fp32 learned parameters)."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    q, k, v = (torch.randn(batch, heads, seq_len, dim, generator=gen).to(device, dtype) for _ in range(3))
    steps = torch.randint(1, 10**5, (batch, seq_len), generator=gen)
    timestamps = 1_700_000_000 + steps.cumsum(dim=1)
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        if t:
            timestamps[b, n - t:n] = timestamps[b, n - 1]
    pos, time = BIASES[bias]
    pos_bias = torch.randn(max(seq_len // 2, 1) + 1, generator=gen).to(device) if pos else None
    time_bias = torch.randn(TIME_BUCKETS, generator=gen).to(device) if time else None
    return dict(q=q, k=k, v=v, lengths=torch.tensor(lengths, device=device),
                num_targets=torch.tensor(targets, device=device), timestamps=timestamps.to(device),
                pos_bias=pos_bias, time_bias=time_bias)


def run(fn, inputs: dict, grad_out: Tensor, **kwargs) -> tuple[Tensor, dict[str, Tensor]]:
    """Output and the gradients of q, k, v and the biases for ``sum(out * grad_out)``."""
    leaves = {name: inputs[name].detach().clone().requires_grad_(True) for name in GRAD_NAMES
              if inputs.get(name) is not None}
    out = fn(**{**inputs, **leaves}, **kwargs)
    (out.float() * grad_out).sum().backward()
    return out.detach(), {name: t.grad for name, t in leaves.items()}


def check_close(got: tuple, want: tuple, atol: float, rtol: float) -> None:
    (out, grads), (ref_out, ref_grads) = got, want
    for name, value in [("out", out), *grads.items()]:
        assert not torch.isnan(value).any(), f"{name}: NaN (unwritten memory?)"
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=rtol)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=atol, rtol=rtol, msg=name)


def check_padding_zero(got: tuple, lengths: Tensor) -> None:
    """Padded rows of the output and of dq, dk, dv are exactly zero."""
    out, grads = got
    for name, value in [("out", out), ("q", grads["q"]), ("k", grads["k"]), ("v", grads["v"])]:
        for b, n in enumerate(lengths.tolist()):
            assert torch.all(value[b, :, n:] == 0), f"{name} row {b}: padded positions are not exactly zero"


def to_jagged(inputs: dict) -> dict:
    """The valid tokens of padded inputs, concatenated: q, k, v [N, H, D], timestamps [N], offsets [B + 1]."""
    lengths = inputs["lengths"]
    valid = torch.arange(inputs["q"].shape[2], device=lengths.device) < lengths.unsqueeze(1)  # [B, L]
    jagged = {name: inputs[name].transpose(1, 2)[valid].contiguous() for name in ("q", "k", "v")}  # [N, H, D]
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64, device=lengths.device)
    offsets[1:] = lengths.cumsum(0)
    return dict(jagged, offsets=offsets, num_targets=inputs["num_targets"], timestamps=inputs["timestamps"][valid],
                pos_bias=inputs["pos_bias"], time_bias=inputs["time_bias"])


def to_padded(values: Tensor, lengths: Tensor, seq_len: int) -> Tensor:
    """[N, H, D] jagged rows back to [B, H, L, D] with zeros at padded positions."""
    valid = torch.arange(seq_len, device=lengths.device) < lengths.unsqueeze(1)  # [B, L]
    out = values.new_zeros(len(lengths), seq_len, *values.shape[1:])  # [B, L, H, D]
    out[valid] = values
    return out.transpose(1, 2)  # [B, H, L, D]


def check_jagged(jagged_fn, padded_ref, inputs: dict, grad_out: Tensor, atol: float, rtol: float,
                 **kwargs) -> None:
    """The jagged entry point on the valid tokens equals the padded reference (outputs and all gradients)."""
    lengths, seq_len = inputs["lengths"], inputs["q"].shape[2]
    jagged = to_jagged(inputs)
    valid = torch.arange(seq_len, device=lengths.device) < lengths.unsqueeze(1)  # [B, L]
    grad_jagged = grad_out.transpose(1, 2)[valid]  # [N, H, D]
    out, grads = run(lambda **kw: jagged_fn(**kw, max_len=seq_len), jagged, grad_jagged, **kwargs)
    padded = (to_padded(out, lengths, seq_len),
              {n: to_padded(g, lengths, seq_len) if n in "qkv" else g for n, g in grads.items()})
    check_close(padded, run(padded_ref, inputs, grad_out, **kwargs), atol, rtol)


def rrms(got: Tensor, want: Tensor) -> float:
    """Relative RMS error of ``got`` against ``want``."""
    want = want.float()
    return float((got.float() - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt().clamp_min(1e-12))


def long_tailed_lengths(batch: int, seq_len: int, seed: int) -> list[int]:
    """Lognormal lengths clipped to 1..L (many short users, a few long ones), one full row."""
    gen = torch.Generator().manual_seed(seed)
    draws = torch.exp(torch.randn(batch, generator=gen) * 1.0 + torch.log(torch.tensor(seq_len / 4.0)))
    lengths = draws.round().clamp(1, seq_len).long().tolist()
    lengths[0] = seq_len
    return lengths
