"""sparse_attention (LightSUAN), backend="triton": local band + dilated residue classes against the reference
on outputs and all gradients (padded and jagged), NaN-poisoned allocations; bf16 at realistic shapes on GPU."""

from __future__ import annotations

import pytest
import torch

from suan.ops.sparse_attention import sparse_attention
from tests.suan.ops.triton.checks import (
    DEVICE,
    check_close,
    check_jagged,
    check_padding_zero,
    layout,
    long_tailed_lengths,
    make_inputs,
    rrms,
    run,
)

# fp32 tolerances of the kernels against the reference (outputs and gradients)
ATOL_FP32 = 1e-5
RTOL_FP32 = 1e-4
# bf16 inputs on GPU: relative RMS error against the fp32 reference on the same (bf16-rounded) inputs
RRMS_BF16 = 1e-2
RRMS_BF16_GRAD = 2e-2

# (L, H, D, k, r, max_attn_len, bias): local + dilated; dilation above the block (17 > 16); dilation 1 (dense);
# no dilated gap possible (r > L); a window that cuts the dilated part; k = 0 (dilation only)
CASES = [(37, 2, 8, 2, 3, 0, "both"), (33, 1, 16, 3, 4, 20, "both"), (24, 1, 8, 1, 17, 0, "both"),
         (17, 1, 8, 4, 1, 0, "time"), (9, 1, 8, 1, 12, 0, "pos"), (29, 1, 8, 2, 3, 4, "both"),
         (25, 1, 8, 0, 5, 0, "nobias")]


@pytest.mark.parametrize(("seq_len", "heads", "dim", "local_window", "dilation", "max_attn_len", "bias"), CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-k{c[3]}-r{c[4]}-w{c[5]}-{c[6]}" for c in CASES])
def test_matches_naive_outputs_and_grads(seq_len, heads, dim, local_window, dilation, max_attn_len, bias):
    lengths, targets = layout(seq_len + dilation, seq_len)
    inputs = make_inputs(seq_len * dilation, lengths, targets, seq_len, heads, dim, bias)
    grad_out = torch.randn(inputs["q"].shape, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    pattern = dict(local_window=local_window, dilation=dilation, max_attn_len=max_attn_len)
    ref = run(sparse_attention, inputs, grad_out, **pattern, backend="naive")
    got = run(sparse_attention, inputs, grad_out, **pattern, backend="triton")
    check_padding_zero(got, inputs["lengths"])
    check_close(got, ref, ATOL_FP32, RTOL_FP32)


def test_jagged_matches_padded_reference():
    from suan.ops.sparse_attention.triton import sparse_attention_jagged

    lengths, targets = layout(6, 31)
    inputs = make_inputs(7, lengths, targets, 31, 1, 8)
    grad_out = torch.randn(inputs["q"].shape, generator=torch.Generator().manual_seed(8)).to(DEVICE)
    check_jagged(sparse_attention_jagged, lambda **kw: sparse_attention(**kw, backend="naive"), inputs, grad_out,
                 ATOL_FP32, RTOL_FP32, local_window=2, dilation=3, max_attn_len=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: bf16 kernels at realistic shapes")
def test_bf16_realistic_shapes():
    batch, heads, seq_len, dim = 4, 4, 1024, 64
    lengths = long_tailed_lengths(batch, seq_len, seed=1)
    targets = [min(8, n // 2) for n in lengths]
    inputs = make_inputs(1, lengths, targets, seq_len, heads, dim, dtype=torch.bfloat16)
    grad_out = torch.randn(inputs["q"].shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    pattern = dict(local_window=32, dilation=16, max_attn_len=0)
    ref = run(sparse_attention, {**inputs, **{n: inputs[n].float() for n in "qkv"}}, grad_out, **pattern,
              backend="torch")
    got = run(sparse_attention, inputs, grad_out, **pattern, backend="triton")
    check_padding_zero(got, inputs["lengths"])
    for name, value, want, limit in [("out", got[0], ref[0], RRMS_BF16)] + [
            (n, got[1][n], ref[1][n], RRMS_BF16_GRAD) for n in ref[1]]:
        assert rrms(value, want) < limit, f"{name}: relative RMS {rrms(value, want):.2e}"
