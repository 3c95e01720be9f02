"""hstu_attention, backend="triton": the pointwise kernels against the reference on outputs and all gradients
(padded and jagged), NaN-poisoned allocations; bf16 at realistic shapes on GPU."""

from __future__ import annotations

import pytest
import torch

from suan.ops.hstu_attention import hstu_attention
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

CASES = [(37, 2, 8, "both", 0), (33, 1, 16, "both", 6), (18, 1, 8, "nobias", 0), (1, 1, 8, "both", 0)]


@pytest.mark.parametrize(("seq_len", "heads", "dim", "bias", "max_attn_len"), CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-{c[3]}-w{c[4]}" for c in CASES])
def test_matches_naive_outputs_and_grads(seq_len, heads, dim, bias, max_attn_len):
    lengths, targets = layout(seq_len * 2, seq_len)
    inputs = make_inputs(seq_len + 1, lengths, targets, seq_len, heads, dim, bias)
    grad_out = torch.randn(inputs["q"].shape, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    ref = run(hstu_attention, inputs, grad_out, max_attn_len=max_attn_len, backend="naive")
    got = run(hstu_attention, inputs, grad_out, max_attn_len=max_attn_len, backend="triton")
    check_padding_zero(got, inputs["lengths"])
    check_close(got, ref, ATOL_FP32, RTOL_FP32)


def test_jagged_matches_padded_reference():
    from suan.ops.hstu_attention.triton import hstu_attention_jagged

    lengths, targets = layout(9, 27)
    inputs = make_inputs(10, lengths, targets, 27, 2, 8)
    grad_out = torch.randn(inputs["q"].shape, generator=torch.Generator().manual_seed(11)).to(DEVICE)
    check_jagged(hstu_attention_jagged, lambda **kw: hstu_attention(**kw, backend="naive"), inputs, grad_out,
                 ATOL_FP32, RTOL_FP32, max_attn_len=5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: bf16 kernels at realistic shapes")
def test_bf16_realistic_shapes():
    batch, heads, seq_len, dim = 4, 4, 1024, 64
    lengths = long_tailed_lengths(batch, seq_len, seed=2)
    targets = [min(8, n // 2) for n in lengths]
    inputs = make_inputs(2, lengths, targets, seq_len, heads, dim, dtype=torch.bfloat16)
    grad_out = torch.randn(inputs["q"].shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    ref = run(hstu_attention, {**inputs, **{n: inputs[n].float() for n in "qkv"}}, grad_out, backend="torch")
    got = run(hstu_attention, inputs, grad_out, backend="triton")
    check_padding_zero(got, inputs["lengths"])
    for name, value, want, limit in [("out", got[0], ref[0], RRMS_BF16)] + [
            (n, got[1][n], ref[1][n], RRMS_BF16_GRAD) for n in ref[1]]:
        assert rrms(value, want) < limit, f"{name}: relative RMS {rrms(value, want):.2e}"
