"""aggregated_attention (TransNeXt): the reference against a float64 loop of the definition, gather path vs
reference on outputs and all gradients (learned tokens included)."""

from __future__ import annotations

import math

import pytest
import torch

from suan.ops.aggregated_attention import aggregated_attention
from suan.ops.common.masks import log_time_bucket
from tests.suan.ops.slot_checks import (
    GRAD_NAMES,
    brute_query_positions,
    check_close,
    check_padding_zero,
    make_inputs,
    random_layout,
    run_with_grads,
)


def _learned(seed: int, heads: int, m: int, dim: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return dict(learned_k=torch.randn(heads, m, dim, generator=gen), learned_v=torch.randn(heads, m, dim, generator=gen))


def _loop_aggregated(inputs, window, pool):
    """Softmax over: itself + history at gaps 1..w, mean-pooled blocks c < p // b, the learned tokens."""
    q, k, v = (inputs[n].double() for n in ("q", "k", "v"))
    lk, lv = inputs["learned_k"].double(), inputs["learned_v"].double()
    batch, heads, seq_len, dim = q.shape
    pos_bias, time_bias, ts = inputs["pos_bias"].double(), inputs["time_bias"].double(), inputs["timestamps"]
    out = torch.zeros_like(q)
    for b in range(batch):
        n, t = int(inputs["lengths"][b]), int(inputs["num_targets"][b])
        pos = brute_query_positions(n, t, seq_len)
        for i in range(n):
            p = pos[i]

            def bias(gap, j, b=b, i=i):
                return pos_bias[min(gap, pos_bias.shape[0] - 1)] + time_bias[log_time_bucket(ts[b, i] - ts[b, j])]
            for h in range(heads):
                scores, values = [], []
                for j in [i] + list(range(max(0, p - window), min(p, n - t))):
                    scores.append(q[b, h, i] @ k[b, h, j] / math.sqrt(dim) + bias(p - pos[j], j))
                    values.append(v[b, h, j])
                for c in range(p // pool):
                    members, last = slice(c * pool, (c + 1) * pool), (c + 1) * pool - 1
                    scores.append(q[b, h, i] @ k[b, h, members].mean(0) / math.sqrt(dim) + bias(p - last, last))
                    values.append(v[b, h, members].mean(0))
                for r in range(lk.shape[1]):
                    scores.append(q[b, h, i] @ lk[h, r] / math.sqrt(dim))
                    values.append(lv[h, r])
                probs = torch.softmax(torch.stack(scores), dim=0)
                out[b, h, i] = (probs.unsqueeze(-1) * torch.stack(values)).sum(0)
    return out


@pytest.mark.parametrize(("window", "pool"), [(2, 3), (0, 1), (5, 2)])
def test_reference_and_fast_path_match_loop_definition(window, pool):
    inputs = {**make_inputs(3, [11, 0, 1, 9, 10], [2, 0, 1, 9, 0], 11, 2, 4), **_learned(4, 2, 3, 4)}
    want = _loop_aggregated(inputs, window, pool)
    for backend in ("naive", "torch"):
        got = aggregated_attention(**inputs, window=window, pool=pool, backend=backend)
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5, msg=backend)


FAST_CASES = [(1, 1, 8, 1, 1, 0, 0), (7, 2, 8, 3, 2, 2, 0), (7, 1, 4, 0, 1, 1, 3), (17, 2, 8, 4, 5, 0, 0),
              (33, 3, 8, 5, 4, 3, 7), (33, 2, 16, 6, 6, 4, 0)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("seq_len", "heads", "dim", "window", "pool", "m", "max_attn_len"), FAST_CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-w{c[3]}-b{c[4]}-m{c[5]}-W{c[6]}" for c in FAST_CASES])
def test_torch_matches_naive_outputs_and_grads(seq_len, heads, dim, window, pool, m, max_attn_len, bias):
    gen = torch.Generator().manual_seed(seq_len * 100 + window * 10 + pool)
    lengths, targets = random_layout(gen, 2, seq_len)
    inputs = make_inputs(seq_len + dim, lengths, targets, seq_len, heads, dim, bias)
    names = GRAD_NAMES
    if m:
        inputs.update(_learned(seq_len, heads, m, dim))
        names = GRAD_NAMES + ("learned_k", "learned_v")
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    pattern = dict(window=window, pool=pool, max_attn_len=max_attn_len)
    ref = run_with_grads(aggregated_attention, inputs, grad_out, names, **pattern, backend="naive")
    got = run_with_grads(aggregated_attention, inputs, grad_out, names, **pattern, backend="torch")
    check_padding_zero(ref[0], inputs["lengths"])
    check_padding_zero(got[0], inputs["lengths"])
    check_close(got, ref)


def test_bad_arguments_raise():
    inputs = make_inputs(0, [2], [1], 2, 1, 8)
    with pytest.raises(ValueError, match="window >= 0 and pool >= 1"):
        aggregated_attention(**inputs, window=1, pool=0)
    with pytest.raises(ValueError, match="both be given"):
        aggregated_attention(**inputs, window=1, pool=1, learned_k=torch.zeros(1, 1, 8))
