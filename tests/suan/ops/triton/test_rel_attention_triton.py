"""rel_attention, backend="triton": outputs and all gradients against the reference (padded and jagged),
exact zeros at padded rows under NaN-poisoned allocations, device rules; bf16 at realistic shapes on GPU."""

from __future__ import annotations

import pytest
import torch

from suan.ops.rel_attention import rel_attention
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

# (L, H, D, bias, max_attn_len): odd lengths, several blocks of 16, with and without the window
CASES = [(37, 2, 8, "both", 0), (37, 1, 16, "both", 5), (33, 1, 8, "pos", 0), (17, 2, 8, "time", 3),
         (20, 1, 8, "nobias", 0), (1, 1, 8, "both", 0)]


@pytest.mark.parametrize(("seq_len", "heads", "dim", "bias", "max_attn_len"), CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-{c[3]}-w{c[4]}" for c in CASES])
def test_matches_naive_outputs_and_grads(seq_len, heads, dim, bias, max_attn_len):
    lengths, targets = layout(seq_len, seq_len)
    inputs = make_inputs(seq_len + dim, lengths, targets, seq_len, heads, dim, bias)
    grad_out = torch.randn(inputs["q"].shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    ref = run(rel_attention, inputs, grad_out, max_attn_len=max_attn_len, backend="naive")
    got = run(rel_attention, inputs, grad_out, max_attn_len=max_attn_len, backend="triton")
    check_padding_zero(got, inputs["lengths"])
    check_close(got, ref, ATOL_FP32, RTOL_FP32)


@pytest.mark.parametrize("max_attn_len", [0, 4])
def test_jagged_matches_padded_reference(max_attn_len):
    from suan.ops.rel_attention.triton import rel_attention_jagged

    lengths, targets = layout(3, 35)
    inputs = make_inputs(4, lengths, targets, 35, 2, 8)
    grad_out = torch.randn(inputs["q"].shape, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    check_jagged(rel_attention_jagged, lambda **kw: rel_attention(**kw, backend="naive"), inputs, grad_out,
                 ATOL_FP32, RTOL_FP32, max_attn_len=max_attn_len)


def test_only_bias_tables_that_need_grad_get_one():
    lengths, targets = layout(0, 9)
    inputs = make_inputs(0, lengths, targets, 9, 1, 8)
    grads = {}
    for backend in ("naive", "triton"):
        pos = inputs["pos_bias"].clone().requires_grad_(True)
        rel_attention(**{**inputs, "pos_bias": pos}, backend=backend).sum().backward()
        grads[backend] = pos.grad
    assert inputs["time_bias"].grad is None
    torch.testing.assert_close(grads["triton"], grads["naive"], atol=ATOL_FP32, rtol=RTOL_FP32)


@pytest.mark.skipif(DEVICE == "cuda", reason="the CPU rule only applies without CUDA")
def test_cpu_without_interpreter_raises(monkeypatch):
    from suan.ops.common import attention_triton

    monkeypatch.setattr(attention_triton, "INTERPRETED", False)
    inputs = make_inputs(0, [2], [1], 2, 1, 8)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        rel_attention(**inputs, backend="triton")


def test_auto_is_torch_on_cpu():
    inputs = make_inputs(0, [3, 1], [1, 0], 3, 1, 8, device="cpu")
    assert torch.equal(rel_attention(**inputs, backend="auto"), rel_attention(**inputs, backend="torch"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: bf16 kernels at realistic shapes")
@pytest.mark.parametrize("max_attn_len", [0, 256])
def test_bf16_realistic_shapes(max_attn_len):
    batch, heads, seq_len, dim = 4, 4, 1024, 64
    lengths = long_tailed_lengths(batch, seq_len, seed=0)
    targets = [min(8, n // 2) for n in lengths]
    inputs = make_inputs(0, lengths, targets, seq_len, heads, dim, dtype=torch.bfloat16)
    grad_out = torch.randn(inputs["q"].shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    # the reference sees the same bf16-rounded inputs in fp32
    ref = run(rel_attention, {**inputs, **{n: inputs[n].float() for n in "qkv"}}, grad_out,
              max_attn_len=max_attn_len, backend="torch")
    got = run(rel_attention, inputs, grad_out, max_attn_len=max_attn_len, backend="triton")
    base = run(rel_attention, inputs, grad_out, max_attn_len=max_attn_len, backend="torch")
    check_padding_zero(got, inputs["lengths"])
    for name, value, want, limit in [("out", got[0], ref[0], RRMS_BF16)] + [
            (n, got[1][n], ref[1][n], RRMS_BF16_GRAD) for n in ref[1]]:
        torch_err = rrms(base[0] if name == "out" else base[1][name], want)
        assert rrms(value, want) < limit, f"{name}: rrms {rrms(value, want):.2e} (torch bf16: {torch_err:.2e})"
