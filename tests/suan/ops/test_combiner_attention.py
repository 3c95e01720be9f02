"""combiner_attention: the masks against their definition, the reference against a float64 loop, gather
path vs reference on outputs and all gradients."""

from __future__ import annotations

import math

import pytest
import torch

from suan.ops.combiner_attention import combiner_attention
from suan.ops.combiner_attention.naive import combiner_mask
from suan.ops.common.masks import log_time_bucket
from tests.suan.ops.slot_checks import (
    brute_query_positions,
    check_close,
    check_padding_zero,
    make_inputs,
    random_layout,
    run_with_grads,
)


def _brute_masks(lengths, targets, seq_len, block, max_attn_len=0):
    """Tokens: itself and history j with (p // b)·b <= j < p; blocks: every c' < p // b."""
    nb = -(-seq_len // block)
    tokens = torch.zeros(len(lengths), seq_len, seq_len, dtype=torch.bool)  # [B, L, L]
    blocks = torch.zeros(len(lengths), seq_len, nb, dtype=torch.bool)  # [B, L, nb]
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        for i, p in enumerate(brute_query_positions(n, t, seq_len)):
            tokens[b, i, i] = True
            if p is None:
                continue
            for j in range((p // block) * block, p):
                tokens[b, i, j] = max_attn_len == 0 or p - j < max_attn_len
            for c in range(p // block):
                blocks[b, i, c] = max_attn_len == 0 or p - c * block < max_attn_len
    return tokens, blocks


@pytest.mark.parametrize(("seq_len", "block"), [(1, 1), (7, 1), (7, 3), (16, 4), (17, 5), (33, 40)])
def test_masks_match_brute_force(seq_len, block):
    lengths, targets = random_layout(torch.Generator().manual_seed(seq_len + block), 3, seq_len)
    for max_attn_len in (0, 3, 9):
        got = combiner_mask(torch.tensor(lengths), torch.tensor(targets), seq_len, block, max_attn_len)
        for g, w in zip(got, _brute_masks(lengths, targets, seq_len, block, max_attn_len), strict=True):
            assert torch.equal(g, w), f"max_attn_len {max_attn_len}"


def _loop_combiner(inputs, block):
    """Softmax over direct tokens and block abstractions (mean key/value, + ln b, biases at the last token)."""
    q, k, v = (inputs[n].double() for n in ("q", "k", "v"))
    batch, heads, seq_len, dim = q.shape
    pos_bias, time_bias, ts = inputs["pos_bias"].double(), inputs["time_bias"].double(), inputs["timestamps"]
    tokens, blocks = _brute_masks(inputs["lengths"].tolist(), inputs["num_targets"].tolist(), seq_len, block)
    out = torch.zeros_like(q)
    for b in range(batch):
        pos = brute_query_positions(int(inputs["lengths"][b]), int(inputs["num_targets"][b]), seq_len)
        for i in range(int(inputs["lengths"][b])):
            def bias(gap, j, b=b, i=i):
                return pos_bias[min(gap, pos_bias.shape[0] - 1)] + time_bias[log_time_bucket(ts[b, i] - ts[b, j])]
            for h in range(heads):
                scores, values = [], []
                for j in torch.nonzero(tokens[b, i]).flatten().tolist():
                    scores.append(q[b, h, i] @ k[b, h, j] / math.sqrt(dim) + bias(pos[i] - pos[j], j))
                    values.append(v[b, h, j])
                for c in torch.nonzero(blocks[b, i]).flatten().tolist():
                    members = slice(c * block, (c + 1) * block)
                    last = (c + 1) * block - 1
                    scores.append(q[b, h, i] @ k[b, h, members].mean(0) / math.sqrt(dim) + math.log(block)
                                  + bias(pos[i] - last, last))
                    values.append(v[b, h, members].mean(0))
                probs = torch.softmax(torch.stack(scores), dim=0)
                out[b, h, i] = (probs.unsqueeze(-1) * torch.stack(values)).sum(0)
    return out


def test_naive_matches_loop_definition():
    inputs = make_inputs(3, [11, 0, 1, 9, 10], [2, 0, 1, 9, 0], 11, 2, 4)
    want = _loop_combiner(inputs, block=3)
    for backend in ("naive", "torch"):
        got = combiner_attention(**inputs, block=3, backend=backend)
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5, msg=backend)


FAST_CASES = [(1, 1, 8, 1, 0), (7, 2, 8, 3, 0), (7, 1, 4, 1, 0), (17, 2, 8, 4, 5), (33, 3, 8, 5, 0), (33, 2, 16, 6, 9)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("seq_len", "heads", "dim", "block", "max_attn_len"), FAST_CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-b{c[3]}-w{c[4]}" for c in FAST_CASES])
def test_torch_matches_naive_outputs_and_grads(seq_len, heads, dim, block, max_attn_len, bias):
    gen = torch.Generator().manual_seed(seq_len * 100 + block)
    lengths, targets = random_layout(gen, 2, seq_len)
    inputs = make_inputs(seq_len + dim, lengths, targets, seq_len, heads, dim, bias)
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    ref = run_with_grads(combiner_attention, inputs, grad_out, block=block, max_attn_len=max_attn_len,
                         backend="naive")
    got = run_with_grads(combiner_attention, inputs, grad_out, block=block, max_attn_len=max_attn_len,
                         backend="torch")
    check_padding_zero(ref[0], inputs["lengths"])
    check_padding_zero(got[0], inputs["lengths"])
    check_close(got, ref)


def test_bad_block_raises():
    with pytest.raises(ValueError, match="block >= 1"):
        combiner_attention(**make_inputs(0, [2], [1], 2, 1, 8), block=0)
