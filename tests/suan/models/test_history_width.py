"""Eager models drop the padding columns every row of a batch has; scores must not change."""

from __future__ import annotations

import pytest
import torch

import suan.models.ctr as ctr
from features.schema import FeatureMap
from suan.config import ModelConfig
from suan.mixers.registry import MIXERS
from suan.models.counts import example_batch
from suan.models.sequence import history_width

# fp32 logits of perturbed models: the same valid tokens in a batch 5 vs 20 columns wide
ATOL = 1e-5
RTOL = 1e-5
DATA_WIDTH, LENGTHS, N_CAND = 20, [5, 3, 1, 0], 3
CASES = {
    **{f"arch:{a}": dict(arch=a) for a in ("suan", "lightsuan", "dnn", "din", "bst", "hstu")},
    **{f"mixer:{m}": dict(mixer=m) for m in sorted(MIXERS)},
    "position:rope": dict(position="rope"), "position:none": dict(position="none"),
    "head:histograph": dict(head="histograph"), "layer_router": dict(layer_router=True),
    "ablate": dict(ablate="fixed:0;stale_qk:1"), "calibrated": dict(sink_beta=0.3, sink_tau=1.5),
}


@pytest.fixture(scope="module")
def fmap(tiny_synthetic) -> FeatureMap:
    return FeatureMap.load(tiny_synthetic / "data" / "feature_map.json")


def _model(fmap: FeatureMap, arch: str = "suan", **options) -> torch.nn.Module:
    """A 2-layer model (history cut to 20) with every parameter perturbed, so zero-initialised paths matter."""
    torch.manual_seed(0)
    model = ctr.build_model(ModelConfig.from_grade(arch, 2, seq_len=DATA_WIDTH, **options), fmap)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def _batch(fmap: FeatureMap, n_cand: int) -> dict[str, torch.Tensor]:
    """Histories of 5, 3, 1 and 0 behaviours right-padded to 20 columns, garbage-free padding as collate makes it."""
    gen = torch.Generator().manual_seed(1)
    batch = example_batch(fmap, seq_len=DATA_WIDTH, batch=len(LENGTHS))
    batch["hist_len"] = torch.tensor(LENGTHS)
    pad = torch.arange(DATA_WIDTH).unsqueeze(0) >= batch["hist_len"].unsqueeze(1)  # [B, L]
    for name in ("hist_item_id", "hist_cate_id", "hist_action"):
        batch[name] = torch.randint(2, fmap.field(name).vocab_size, batch[name].shape, generator=gen)
        batch[name][pad] = 0
    batch["hist_ts"] = torch.sort(torch.randint(0, 10**6, (len(LENGTHS), DATA_WIDTH), generator=gen), dim=1).values
    batch["hist_ts"][pad] = 0
    batch["target_ts"] = torch.full((len(LENGTHS),), 2 * 10**6)
    batch.update({f: torch.randint(2, fmap.field(f).vocab_size, (len(LENGTHS), n_cand), generator=gen)
                  for f in ("item_id", "cate_id")})
    return batch


@pytest.mark.parametrize("case", sorted(CASES))
def test_trimmed_batch_scores_equal_full_width_scores(fmap, case, monkeypatch):
    model, batch = _model(fmap, **CASES[case]), _batch(fmap, N_CAND)
    with torch.no_grad():
        trimmed = model(batch)  # [B, C]: 5 history columns
        monkeypatch.setattr(ctr, "history_width", lambda lengths, keep: keep)
        full = model(batch)  # [B, C]: 20 history columns
    assert torch.isfinite(full).all()
    torch.testing.assert_close(trimmed, full, atol=ATOL, rtol=RTOL)


def test_width_is_the_longest_history_and_the_full_width_when_exporting(monkeypatch):
    lengths = torch.tensor(LENGTHS)
    assert history_width(lengths, 20) == 5
    assert history_width(lengths, 4) == 4  # never wider than the model reads
    assert history_width(torch.zeros(3, dtype=torch.int64), 20) == 1  # one slot for empty histories
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert history_width(lengths, 20) == 20
