"""routing_attention: the mask against its definition, the fast path's slots against the mask, gather path
vs reference on outputs and all gradients, the online k-means step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from suan.mixers.base import MixerConfig
from suan.mixers.registry import build_mixer
from suan.mixers.routing import RoutingOptions
from suan.ops.routing_attention import assign_clusters, routing_attention, routing_mask, update_centroids
from suan.ops.routing_attention import torch as torch_path
from suan.utils.config import ConfigError
from tests.suan.ops.slot_checks import (
    brute_query_positions,
    check_close,
    check_padding_zero,
    make_inputs,
    random_layout,
    run_with_grads,
)


def _centroids(seed: int, heads: int, num_clusters: int, dim: int) -> torch.Tensor:
    return F.normalize(torch.randn(heads, num_clusters, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _brute_mask(clusters, lengths, targets, capacity, max_attn_len=0):
    """Itself + the `capacity` most recent history keys j < p with the query's cluster (window permitting)."""
    batch, heads, seq_len = clusters.shape
    out = torch.zeros(batch, heads, seq_len, seq_len, dtype=torch.bool)
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        for h in range(heads):
            for i, p in enumerate(brute_query_positions(n, t, seq_len)):
                out[b, h, i, i] = True
                if p is None:
                    continue
                same = [j for j in range(min(p, n - t)) if clusters[b, h, j] == clusters[b, h, i]]
                for j in same[max(len(same) - capacity, 0):] if capacity else []:
                    out[b, h, i, j] = max_attn_len == 0 or p - j < max_attn_len
    return out


MASK_CASES = [(1, 2, 1), (7, 1, 3), (7, 3, 0), (16, 4, 2), (33, 3, 5), (33, 2, 40)]


@pytest.mark.parametrize(("seq_len", "num_clusters", "capacity"), MASK_CASES,
                         ids=[f"L{c[0]}-C{c[1]}-w{c[2]}" for c in MASK_CASES])
def test_mask_and_fast_slots_match_brute_force(seq_len, num_clusters, capacity):
    gen = torch.Generator().manual_seed(seq_len + num_clusters)
    lengths, targets = random_layout(gen, 3, seq_len)
    clusters = torch.randint(0, num_clusters, (len(lengths), 2, seq_len), generator=gen)
    lengths_t, targets_t = torch.tensor(lengths), torch.tensor(targets)
    pos = torch.minimum(torch.arange(seq_len), (lengths_t - targets_t).unsqueeze(1))
    for max_attn_len in (0, 3):
        want = _brute_mask(clusters, lengths, targets, capacity, max_attn_len)
        assert torch.equal(routing_mask(clusters, lengths_t, targets_t, capacity, max_attn_len), want)
        key, valid = torch_path._slots(clusters, pos, lengths_t, targets_t, num_clusters, capacity, max_attn_len)
        count = torch.zeros(want.shape, dtype=torch.long).scatter_add_(-1, key, valid.long())
        assert count.max() == 1  # no key twice
        assert torch.equal(count > 0, want), f"max_attn_len {max_attn_len}"


FAST_CASES = [(1, 1, 8, 2, 3, 0), (7, 2, 8, 3, 2, 0), (7, 1, 4, 1, 0, 3), (17, 2, 8, 4, 3, 5), (33, 3, 8, 5, 4, 0),
              (33, 2, 16, 3, 40, 0)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("seq_len", "heads", "dim", "num_clusters", "capacity", "max_attn_len"), FAST_CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-C{c[3]}-w{c[4]}-W{c[5]}" for c in FAST_CASES])
def test_torch_matches_naive_outputs_and_grads(seq_len, heads, dim, num_clusters, capacity, max_attn_len, bias):
    gen = torch.Generator().manual_seed(seq_len * 100 + num_clusters * 10 + capacity)
    lengths, targets = random_layout(gen, 2, seq_len)
    inputs = make_inputs(seq_len + dim, lengths, targets, seq_len, heads, dim, bias)
    inputs["centroids"] = _centroids(seq_len, heads, num_clusters, dim)
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    pattern = dict(capacity=capacity, max_attn_len=max_attn_len)
    ref = run_with_grads(routing_attention, inputs, grad_out, **pattern, backend="naive")
    got = run_with_grads(routing_attention, inputs, grad_out, **pattern, backend="torch")
    check_padding_zero(ref[0], inputs["lengths"])
    check_padding_zero(got[0], inputs["lengths"])
    check_close(got, ref)


def test_update_centroids_moves_towards_history_means_only():
    inputs = make_inputs(5, [9, 4, 0], [2, 4, 0], 9, 2, 8)
    centroids = _centroids(6, 2, 3, 8)
    k = inputs["k"]
    new = update_centroids(centroids, k, inputs["lengths"], inputs["num_targets"], decay=0.5)
    torch.testing.assert_close(new.norm(dim=-1), torch.ones(2, 3))
    # by hand: history tokens only (row 0: 7 tokens; row 1: none)
    clusters = assign_clusters(k, centroids)
    for h in range(2):
        for c in range(3):
            members = [F.normalize(k[0, h, j], dim=-1) for j in range(7) if clusters[0, h, j] == c]
            if not members:
                assert torch.equal(new[h, c], centroids[h, c])
                continue
            want = F.normalize(0.5 * centroids[h, c] + 0.5 * torch.stack(members).mean(0), dim=-1)
            torch.testing.assert_close(new[h, c], want)
    # changing candidates or padding changes nothing
    k2 = k.clone()
    k2[0, :, 7:] += 5.0
    k2[1] += 5.0
    assert torch.equal(update_centroids(centroids, k2, inputs["lengths"], inputs["num_targets"], 0.5), new)


def test_bad_arguments_raise():
    inputs = make_inputs(0, [2], [1], 2, 1, 8)
    with pytest.raises(ValueError, match="capacity >= 0"):
        routing_attention(**inputs, centroids=_centroids(0, 1, 2, 8), capacity=-1)
    with pytest.raises(ValueError, match="centroids must be"):
        routing_attention(**inputs, centroids=_centroids(0, 2, 2, 8), capacity=1)


def test_mixer_moves_centroids_in_training_only():
    mixer = build_mixer(MixerConfig(name="routing", d_model=8, num_heads=2, max_len=16))
    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(0))
    batch = dict(lengths=torch.tensor([6, 3]), num_targets=torch.tensor([1, 0]),
                 timestamps=torch.arange(12).view(2, 6) * 100)
    before = mixer.centroids.clone()
    mixer.eval()
    with torch.no_grad():
        first = mixer(x, **batch)
        assert torch.equal(mixer(x, **batch), first) and torch.equal(mixer.centroids, before)
    mixer.train()
    mixer(x, **batch).sum().backward()
    assert not torch.equal(mixer.centroids, before)
    torch.testing.assert_close(mixer.centroids.norm(dim=-1), torch.ones(2, 4))
    with pytest.raises(ConfigError, match="routing: clusters must be >= 1"):
        RoutingOptions(clusters=0)
