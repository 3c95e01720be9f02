"""Attention diagnostics on hand-built maps with known answers, and the batch accumulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from suan.analysis.diagnostics import (
    attention_share,
    classify_sinks,
    mass_by_distance,
    mass_by_time_bucket,
    received_mass,
    router_summary,
    sink_scores,
    target_attention,
    uniform_mass,
)
from suan.analysis.stats import AttentionStats
from suan.ops.common.masks import attention_mask

# hand-computed values are given to 4 decimals or exactly
ATOL = 1e-4
# fp32 sums of one batch vs two (accumulated in fp64)
SPLIT_RTOL = 1e-6
SPLIT_ATOL = 1e-7


def _map() -> dict[str, torch.Tensor]:
    """3 history tokens + 1 candidate, one head; key 0 takes most of the attention."""
    probs = torch.tensor([[1.0, 0.0, 0.0, 0.0],
                          [0.9, 0.1, 0.0, 0.0],
                          [0.8, 0.1, 0.1, 0.0],
                          [0.5, 0.2, 0.2, 0.1]]).view(1, 1, 4, 4)
    lengths, targets = torch.tensor([4]), torch.tensor([1])
    return dict(probs=probs, mask=attention_mask(lengths, targets, 4), lengths=lengths, num_targets=targets,
                timestamps=torch.tensor([[0, 0, 0, 1000]]), route=None)


def test_received_mass_uniform_mass_and_sink_scores():
    m = _map()
    mass = received_mass(m["probs"], m["lengths"])[0, 0]
    torch.testing.assert_close(mass, torch.tensor([0.8, 0.1, 0.075, 0.025]), atol=ATOL, rtol=0)
    # uniform rows: [1], [1/2, 1/2], [1/3 x 3], [1/4 x 4] (the candidate sees the history and itself)
    uniform = uniform_mass(m["mask"], m["lengths"])[0]
    torch.testing.assert_close(uniform, torch.tensor([25 / 48, 13 / 48, 7 / 48, 1 / 16]), atol=ATOL, rtol=0)
    # key 0: 0.8 over the larger of 1/4 and 25/48, key 1: 0.1 over 13/48; keys 2, 3 over 1/4
    scores = sink_scores(m["probs"], m["mask"], m["lengths"])[0, 0]
    torch.testing.assert_close(scores, torch.tensor([0.8 * 48 / 25, 0.1 * 48 / 13, 0.3, 0.1]), atol=ATOL, rtol=0)
    torch.testing.assert_close(attention_share(m["probs"], torch.tensor([[True, False, False, True]]), m["lengths"]),
                               torch.tensor([[0.825]]), atol=ATOL, rtol=0)


def test_classify_sinks_primary_secondary_early_with_onset_and_lifetime():
    N, H, L = 3, 2, 5
    scores = torch.zeros(N, 2, H, L)
    scores[:, 0, 0, 0] = 6.0  # row 0, anchor, every layer: primary, lifetime 3
    scores[1:, 0, 1, 2] = torch.tensor([7.0, 9.0])  # row 0, position 2 from layer 1 (head 1): secondary
    scores[0, 0, 0, 3] = 5.0  # row 0, position 3 at layer 0 only: early
    scores[2, 0, 0, 4] = 50.0  # row 0, position 4 is padding (length 4): never a sink
    scores[1, 1, 0, 0] = 4.0  # row 1, anchor sinking first at layer 1: secondary
    out = classify_sinks(scores, torch.tensor([4, 5]), tau=4.0)
    assert out["primary"].tolist() == [[True, False, False, False, False], [False] * 5]
    assert out["secondary"].tolist() == [[False, False, True, False, False], [True, False, False, False, False]]
    assert out["early"].tolist() == [[False, False, False, True, False], [False] * 5]
    assert out["onset"].tolist() == [[0, 3, 1, 0, 3], [1, 3, 3, 3, 3]]
    assert out["lifetime"].tolist() == [[3, 0, 2, 1, 0], [1, 0, 0, 0, 0]]
    assert out["peak"][0, 2] == 9.0
    # a higher threshold keeps only the secondary sink of row 0 (scores 7 and 9)
    assert classify_sinks(scores, torch.tensor([4, 5]), tau=6.5)["secondary"].sum() == 1


def test_mass_by_distance_time_bucket_and_target_row():
    m = _map()
    mass, uniform, queries = mass_by_distance(m["probs"], m["mask"], m["lengths"], m["num_targets"], 4)
    assert queries == 4
    torch.testing.assert_close(mass[0] / queries, torch.tensor([1.3, 1.2, 1.0, 0.5]) / 4, atol=ATOL, rtol=0)
    want_uniform = torch.tensor([1 + 1 / 2 + 1 / 3 + 1 / 4, 1 / 2 + 1 / 3 + 1 / 4, 1 / 3 + 1 / 4, 1 / 4])
    torch.testing.assert_close(uniform, want_uniform, atol=ATOL, rtol=0)
    # the candidate (t = 1000) sees keys at t = 0: bucket floor(ln 1000 / 0.301) = 22; the rest is bucket 0
    mass, uniform, queries = mass_by_time_bucket(m["probs"], m["mask"], m["lengths"], m["timestamps"])
    assert mass[0, 0] == pytest.approx(3.1) and mass[0, 22] == pytest.approx(0.9) and mass.sum() == pytest.approx(4)
    assert uniform[22] == pytest.approx(0.75)
    torch.testing.assert_close(target_attention(m["probs"], m["lengths"], m["num_targets"])[0, 0],
                               torch.tensor([0.5, 0.2, 0.2, 0.1]))


def test_router_summary_counts_saved_attention_flops():
    # T = 16 tokens; sparse keys per query: (3 + 1) + (16 // 4 + 1) = 9
    out = router_summary([10, 0], samples=10, seq_len=15, local_window=3, dilation=4)
    assert out["full_fraction_per_layer"] == [1.0, 0.0] and out["sparse_keys_per_query"] == 9
    assert out["attention_flops_saved"] == pytest.approx((1 - 9 / 16) / 2)


def test_stats_of_two_batches_equal_stats_of_their_union():
    gen = torch.Generator().manual_seed(0)
    lengths, targets = torch.tensor([6, 3, 1, 6]), torch.tensor([1, 1, 1, 1])
    mask = attention_mask(lengths, targets, 6)
    layers = []
    for _ in range(2):
        logits = torch.randn(4, 2, 6, 6, generator=gen)
        logits[..., 0] += 3.0
        probs = torch.softmax(logits.masked_fill(~mask.unsqueeze(1), float("-inf")), -1)
        probs = probs * (torch.arange(6) < lengths.unsqueeze(1)).view(4, 1, 6, 1)
        layers.append(dict(probs=probs, mask=mask, lengths=lengths, num_targets=targets,
                           timestamps=torch.arange(6).repeat(4, 1) * 100, route=torch.tensor([1, 0, 1, 1]) > 0))
    whole, split = AttentionStats(2, 2, 6, tau=2.0, users=0), AttentionStats(2, 2, 6, tau=2.0, users=0)
    whole.update(layers)
    for rows in (slice(0, 1), slice(1, 4)):
        split.update([{k: (v[rows] if k != "route" or v is not None else v) for k, v in layer.items()}
                      for layer in layers])
    a, b = whole.result(), split.result()
    assert a["rows"] == b["rows"] == 4 and whole.full_counts == split.full_counts == [3, 3]
    for key in ("mass_per_position", "sink_score_per_position", "distance", "time_bucket", "sinks"):
        _check_close(a[key], b[key], key)
    assert a["sinks"]["primary"]["per_row"] > 0, "the boosted first key must be found as a primary sink"
    mass = torch.tensor(a["distance"]["mass"]).sum(-1)  # [N, H]: curves sum to 1
    torch.testing.assert_close(mass, torch.ones(2, 2, dtype=mass.dtype))


def _check_close(a, b, where: str) -> None:
    if isinstance(a, dict):
        for key, value in a.items():
            _check_close(value, b[key], f"{where}.{key}")
    else:
        np.testing.assert_allclose(a, b, rtol=SPLIT_RTOL, atol=SPLIT_ATOL, err_msg=where)
