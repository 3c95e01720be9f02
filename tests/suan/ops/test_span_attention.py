"""span_attention (superlinear span search): the mask against its definition, gather path vs reference on
outputs and all gradients, equality with rel_attention when every span is kept, ONNX with a dynamic L."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from suan.ops.rel_attention import rel_attention
from suan.ops.span_attention import span_attention, span_mask
from tests.suan.ops.slot_checks import (
    ATOL_FP32,
    brute_query_positions,
    check_close,
    check_padding_zero,
    make_inputs,
    random_layout,
    run_with_grads,
)


def _brute_mask(scores, lengths, targets, span, top_k, max_attn_len=0):
    """Own span so far + self + tokens of the top-k eligible spans (c < p // s, a key within the window)."""
    batch, heads, seq_len, _ = scores.shape
    out = torch.zeros(batch, heads, seq_len, seq_len, dtype=torch.bool)
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        for h in range(heads):
            for i, p in enumerate(brute_query_positions(n, t, seq_len)):
                out[b, h, i, i] = True
                if p is None:
                    continue
                eligible = [c for c in range(p // span) if max_attn_len == 0 or p - (c + 1) * span + 1 < max_attn_len]
                kept = sorted(eligible, key=lambda c, b=b, h=h, i=i: -float(scores[b, h, i, c]))[:top_k]
                keys = set(range((p // span) * span, p)) | {j for c in kept for j in range(c * span, (c + 1) * span)}
                for j in keys:
                    out[b, h, i, j] = max_attn_len == 0 or p - j < max_attn_len
    return out


MASK_CASES = [(1, 1, 1), (7, 1, 2), (7, 2, 1), (16, 3, 2), (33, 4, 3), (33, 5, 1), (33, 3, 20)]


@pytest.mark.parametrize(("seq_len", "span", "top_k"), MASK_CASES, ids=[f"L{c[0]}-s{c[1]}-k{c[2]}" for c in MASK_CASES])
def test_mask_matches_brute_force(seq_len, span, top_k):
    gen = torch.Generator().manual_seed(seq_len + span * 10 + top_k)
    lengths, targets = random_layout(gen, 3, seq_len)
    scores = torch.randn(len(lengths), 2, seq_len, -(-seq_len // span), generator=gen)
    for max_attn_len in (0, 3, 10):
        got = span_mask(scores, torch.tensor(lengths), torch.tensor(targets), span, top_k, max_attn_len)
        assert torch.equal(got, _brute_mask(scores, lengths, targets, span, top_k, max_attn_len))


FAST_CASES = [(1, 1, 8, 1, 1, 0), (7, 2, 8, 2, 1, 0), (7, 1, 4, 1, 2, 3), (17, 2, 8, 3, 2, 7), (33, 3, 8, 4, 2, 0),
              (33, 2, 16, 3, 3, 0), (33, 2, 8, 40, 2, 0)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("seq_len", "heads", "dim", "span", "top_k", "max_attn_len"), FAST_CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-s{c[3]}-k{c[4]}-W{c[5]}" for c in FAST_CASES])
def test_torch_matches_naive_outputs_and_grads(seq_len, heads, dim, span, top_k, max_attn_len, bias):
    gen = torch.Generator().manual_seed(seq_len * 100 + span * 10 + top_k)
    lengths, targets = random_layout(gen, 2, seq_len)
    inputs = make_inputs(seq_len + dim, lengths, targets, seq_len, heads, dim, bias)
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    pattern = dict(span=span, top_k=top_k, max_attn_len=max_attn_len)
    ref = run_with_grads(span_attention, inputs, grad_out, **pattern, backend="naive")
    got = run_with_grads(span_attention, inputs, grad_out, **pattern, backend="torch")
    check_padding_zero(ref[0], inputs["lengths"])
    check_padding_zero(got[0], inputs["lengths"])
    check_close(got, ref)


@pytest.mark.parametrize("backend", ["naive", "torch"])
def test_every_span_kept_equals_rel_attention(backend):
    seq_len = 23
    lengths, targets = random_layout(torch.Generator().manual_seed(0), 2, seq_len)
    inputs = make_inputs(1, lengths, targets, seq_len, 2, 8)
    grad_out = torch.randn(len(lengths), 2, seq_len, 8, generator=torch.Generator().manual_seed(2))
    ref = run_with_grads(rel_attention, inputs, grad_out, backend="naive")
    check_close(run_with_grads(span_attention, inputs, grad_out, span=3, top_k=8, backend=backend), ref)


def test_bad_arguments_raise():
    inputs = make_inputs(0, [2], [1], 2, 1, 8)
    for span, top_k in ((0, 1), (2, 0)):
        with pytest.raises(ValueError, match="span >= 1 and top_k >= 1"):
            span_attention(**inputs, span=span, top_k=top_k)


class _Wrapper(nn.Module):
    def forward(self, q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, num_targets: Tensor,
                timestamps: Tensor) -> Tensor:
        return span_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                              span=3, top_k=2, backend="torch")


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec:FutureWarning", "ignore:# The axis name:UserWarning")
def test_onnx_export_keeps_selection_and_length_dynamic(tmp_path):
    names = ("q", "k", "v", "lengths", "num_targets", "timestamps")
    example = make_inputs(8, [9, 4, 0], [2, 1, 0], 9, 2, 8, bias=False)
    batch_dim, seq_dim = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", min=1, max=64)
    bl = {0: batch_dim, 2: seq_dim}
    path = tmp_path / "span.onnx"
    torch.onnx.export(_Wrapper().eval(), tuple(example[n] for n in names), path, dynamo=True, verbose=False,
                      input_names=list(names), output_names=["y"],
                      dynamic_shapes=(bl, bl, bl, {0: batch_dim}, {0: batch_dim}, {0: batch_dim, 1: seq_dim}))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # 31 positions: up to 10 spans searched, 2 kept
    for lengths, targets, seq_len in (([31, 20, 1], [1, 5, 1], 31), ([2, 0], [1, 0], 2)):
        batch = make_inputs(seq_len, lengths, targets, seq_len, 2, 8, bias=False)
        (got,) = session.run(None, {n: batch[n].numpy() for n in names})
        want = _Wrapper()(*(batch[n] for n in names))
        torch.testing.assert_close(torch.from_numpy(got), want, atol=ATOL_FP32, rtol=0)
