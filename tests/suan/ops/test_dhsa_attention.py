"""dhsa_attention: chunks and mask against their definitions, gather path vs reference on outputs and all
gradients, the session boundary rule."""

from __future__ import annotations

import pytest
import torch

from suan.ops.dhsa_attention import chunk_ids, dhsa_attention, dhsa_mask, session_boundaries
from tests.suan.ops.slot_checks import (
    brute_query_positions,
    check_close,
    check_padding_zero,
    make_inputs,
    random_layout,
    run_with_grads,
)


def _brute_chunks(boundaries, lengths, targets, chunk):
    """Walk the history: a chunk starts at a flagged token or a multiple of c; a query joins or starts one."""
    batch, seq_len = boundaries.shape
    key_chunk = torch.full((batch, seq_len), -1)
    query_chunk = torch.zeros(batch, seq_len, dtype=torch.long)
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        current = -1
        for j in range(n - t):
            current += bool(boundaries[b, j]) or j % chunk == 0
            key_chunk[b, j] = current
        for i, p in enumerate(brute_query_positions(n, t, seq_len)):
            p = min(i, n - t) if p is None else p
            starts = bool(boundaries[b, i]) or p % chunk == 0
            query_chunk[b, i] = key_chunk[b, i] if i < n - t else current + starts
    return key_chunk, query_chunk


def _brute_mask(scores, key_chunk, query_chunk, lengths, targets, top_k, max_attn_len=0):
    """Own chunk so far + self + tokens of the top-m complete earlier chunks (window permitting)."""
    batch, heads, seq_len, _ = scores.shape
    out = torch.zeros(batch, heads, seq_len, seq_len, dtype=torch.bool)
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        members = {}
        for j in range(n - t):
            members.setdefault(int(key_chunk[b, j]), []).append(j)
        for h in range(heads):
            for i, p in enumerate(brute_query_positions(n, t, seq_len)):
                out[b, h, i, i] = True
                if p is None:
                    continue
                own = int(query_chunk[b, i])
                eligible = [g for g in members if g < own and (max_attn_len == 0 or p - members[g][-1] < max_attn_len)]
                kept = sorted(eligible, key=lambda g, b=b, h=h, i=i: -float(scores[b, h, i, g]))[:top_k]
                keys = {j for g in kept for j in members[g]} | {j for j in members.get(own, []) if j < p}
                for j in keys:
                    out[b, h, i, j] = max_attn_len == 0 or p - j < max_attn_len
    return out


CASES = [(1, 1, 1, 0.5), (7, 2, 1, 0.3), (7, 3, 2, 0.0), (16, 4, 2, 0.4), (33, 5, 3, 0.2), (33, 3, 1, 1.0),
         (33, 8, 2, 0.1)]


@pytest.mark.parametrize(("seq_len", "chunk", "top_k", "density"), CASES,
                         ids=[f"L{c[0]}-c{c[1]}-m{c[2]}-p{c[3]}" for c in CASES])
def test_chunks_and_mask_match_brute_force(seq_len, chunk, top_k, density):
    gen = torch.Generator().manual_seed(seq_len * 10 + chunk)
    lengths, targets = random_layout(gen, 3, seq_len)
    boundaries = torch.rand(len(lengths), seq_len, generator=gen) < density
    lengths_t, targets_t = torch.tensor(lengths), torch.tensor(targets)
    key_chunk, query_chunk = chunk_ids(boundaries, lengths_t, targets_t, chunk)
    want_key, want_query = _brute_chunks(boundaries, lengths, targets, chunk)
    assert torch.equal(key_chunk, want_key)
    valid = torch.arange(seq_len) < lengths_t.unsqueeze(1)
    assert torch.equal(query_chunk[valid], want_query[valid])
    scores = torch.randn(len(lengths), 2, seq_len, seq_len, generator=gen)
    for max_attn_len in (0, 4):
        got = dhsa_mask(scores, key_chunk, query_chunk, lengths_t, targets_t, top_k, max_attn_len)
        assert torch.equal(got, _brute_mask(scores, key_chunk, query_chunk, lengths, targets, top_k, max_attn_len))


FAST_CASES = [(1, 1, 8, 1, 1, 0), (7, 2, 8, 2, 1, 0), (7, 1, 4, 3, 2, 3), (17, 2, 8, 3, 2, 7), (33, 3, 8, 4, 2, 0),
              (33, 2, 16, 5, 3, 0), (33, 2, 8, 40, 2, 0)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("seq_len", "heads", "dim", "chunk", "top_k", "max_attn_len"), FAST_CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-c{c[3]}-m{c[4]}-W{c[5]}" for c in FAST_CASES])
def test_torch_matches_naive_outputs_and_grads(seq_len, heads, dim, chunk, top_k, max_attn_len, bias):
    gen = torch.Generator().manual_seed(seq_len * 100 + chunk * 10 + top_k)
    lengths, targets = random_layout(gen, 2, seq_len)
    inputs = make_inputs(seq_len + dim, lengths, targets, seq_len, heads, dim, bias)
    inputs["boundaries"] = torch.rand(len(lengths), seq_len, generator=gen) < 0.3
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    pattern = dict(chunk=chunk, top_k=top_k, max_attn_len=max_attn_len)
    ref = run_with_grads(dhsa_attention, inputs, grad_out, **pattern, backend="naive")
    got = run_with_grads(dhsa_attention, inputs, grad_out, **pattern, backend="torch")
    check_padding_zero(ref[0], inputs["lengths"])
    check_padding_zero(got[0], inputs["lengths"])
    check_close(got, ref)


def test_session_boundaries():
    timestamps = torch.tensor([[0, 10, 5000, 5001, 9000, 9000, 0], [100, 200, 300, 0, 0, 0, 0]])
    lengths, targets = torch.tensor([6, 3]), torch.tensor([2, 0])
    got = session_boundaries(timestamps, lengths, targets, 1000)
    # row 0: history 0..3, candidates 4, 5 compare with the last history time (5001)
    assert got[0, :6].tolist() == [True, False, True, False, True, True]
    assert got[1, :3].tolist() == [True, False, False]


def test_bad_arguments_raise():
    inputs = {**make_inputs(0, [2], [1], 2, 1, 8), "boundaries": torch.zeros(1, 2, dtype=torch.bool)}
    for chunk, top_k in ((0, 1), (2, 0)):
        with pytest.raises(ValueError, match="chunk >= 1 and top_k >= 1"):
            dhsa_attention(**inputs, chunk=chunk, top_k=top_k)
