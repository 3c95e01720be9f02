"""halo_attention (HaloNet): the mask against its definition, gather path vs reference on outputs and all
gradients, equality with rel_attention where the halo covers everything."""

from __future__ import annotations

import pytest
import torch

from suan.config import mixer_options_from_counts
from suan.ops.halo_attention import halo_attention, halo_mask
from suan.ops.rel_attention import rel_attention
from suan.utils.config import ConfigError
from tests.suan.ops.slot_checks import (
    brute_query_positions,
    check_close,
    check_padding_zero,
    make_inputs,
    random_layout,
    run_with_grads,
)


def _brute_mask(lengths, targets, seq_len, block, halo, max_attn_len=0):
    """Query at position p sees itself and history keys j with (p // b)·b - h <= j < p."""
    out = torch.zeros(len(lengths), seq_len, seq_len, dtype=torch.bool)  # [B, L, L]
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        for i, p in enumerate(brute_query_positions(n, t, seq_len)):
            out[b, i, i] = True
            if p is None:
                continue
            for j in range(max(0, (p // block) * block - halo), min(p, n - t)):
                out[b, i, j] = max_attn_len == 0 or p - j < max_attn_len
    return out


MASK_CASES = [(1, 1, 0), (7, 1, 0), (7, 3, 1), (7, 4, 2), (16, 4, 3), (16, 20, 0), (33, 5, 7)]


@pytest.mark.parametrize(("seq_len", "block", "halo"), MASK_CASES, ids=[f"L{c[0]}-b{c[1]}-h{c[2]}" for c in MASK_CASES])
def test_mask_matches_brute_force(seq_len, block, halo):
    gen = torch.Generator().manual_seed(seq_len * 7 + block)
    lengths, targets = random_layout(gen, 3, seq_len)
    for max_attn_len in (0, 3):
        got = halo_mask(torch.tensor(lengths), torch.tensor(targets), seq_len, block, halo, max_attn_len)
        assert torch.equal(got, _brute_mask(lengths, targets, seq_len, block, halo, max_attn_len))


FAST_CASES = [(1, 1, 8, 1, 0, 0), (7, 2, 8, 3, 1, 0), (7, 1, 4, 1, 0, 0), (17, 2, 8, 4, 2, 3), (33, 3, 8, 5, 3, 0),
              (33, 2, 16, 8, 4, 6)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("seq_len", "heads", "dim", "block", "halo", "max_attn_len"), FAST_CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-b{c[3]}-h{c[4]}-w{c[5]}" for c in FAST_CASES])
def test_torch_matches_naive_outputs_and_grads(seq_len, heads, dim, block, halo, max_attn_len, bias):
    gen = torch.Generator().manual_seed(seq_len * 100 + block * 10 + halo)
    lengths, targets = random_layout(gen, 2, seq_len)
    inputs = make_inputs(seq_len + dim, lengths, targets, seq_len, heads, dim, bias)
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    pattern = dict(block=block, halo=halo, max_attn_len=max_attn_len)
    ref = run_with_grads(halo_attention, inputs, grad_out, **pattern, backend="naive")
    got = run_with_grads(halo_attention, inputs, grad_out, **pattern, backend="torch")
    check_padding_zero(ref[0], inputs["lengths"])
    check_padding_zero(got[0], inputs["lengths"])
    check_close(got, ref)


@pytest.mark.parametrize("backend", ["naive", "torch"])
def test_wide_halo_equals_rel_attention(backend):
    seq_len = 17
    lengths, targets = random_layout(torch.Generator().manual_seed(0), 2, seq_len)
    inputs = make_inputs(1, lengths, targets, seq_len, 2, 8)
    grad_out = torch.randn(len(lengths), 2, seq_len, 8, generator=torch.Generator().manual_seed(2))
    ref = run_with_grads(rel_attention, inputs, grad_out, backend="naive")
    check_close(run_with_grads(halo_attention, inputs, grad_out, block=4, halo=seq_len, backend=backend), ref)


def test_bad_arguments_raise():
    inputs = make_inputs(0, [2], [1], 2, 1, 8)
    for block, halo in ((0, 1), (2, -1)):
        with pytest.raises(ValueError, match="block >= 1 and halo >= 0"):
            halo_attention(**inputs, block=block, halo=halo)


@pytest.mark.parametrize("name", ["halonet", "combiner", "transnext", "span_search", "dhsa"])
def test_block_sized_mixers_reject_a_zero_window_when_the_model_is_configured(name):
    with pytest.raises(ConfigError, match=f"{name}: .* must be >= 1"):
        mixer_options_from_counts("suan", name, local_window=0)
