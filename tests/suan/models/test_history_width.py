"""Eager models drop the padding columns every row of a batch (or of a chunk of similar lengths) has;
scores and gradients must not change."""

from __future__ import annotations

import functools

import pytest
import torch

import suan.models.ctr as ctr
from features.schema import FeatureMap, Role
from suan.config import ModelConfig
from suan.mixers.registry import MIXERS
from suan.models.counts import example_batch
from suan.models.sequence import history_width, length_chunks

# fp32 logits of perturbed models (|logit| up to ~40): the same valid tokens in a batch 5 vs 20 columns
# wide. Reordered sums give absolute noise proportional to the largest logit (measured up to 1.5e-6 of
# it at 1 and 2 intra-op threads), so the absolute tolerance scales with it; counting one padding
# column as a behaviour moves a logit by 6% of the largest or more in every case
EVAL_ATOL_SCALE = 5e-6
RTOL = 1e-5
# gradients of a batch-mean loss, summed over rows encoded in a different grouping: reordered fp32
# sums. Some are exactly zero in exact arithmetic (the head's BatchNorm is blind to a per-channel scale
# of its input, e.g. final_norm.weight) and come out as cancellation noise, so the absolute tolerance
# scales with the model's largest gradient entry
GRAD_ATOL_SCALE = 1e-5
GRAD_RTOL = 1e-4
# training-mode logits (|logit| up to ~50 here) go through the head's BatchNorm on batch statistics,
# which turns ~1e-6 relative noise in the encoder outputs into absolute noise on small logits
LOGIT_ATOL_SCALE = 2e-6
DATA_WIDTH, LENGTHS, N_CAND = 20, [5, 3, 1, 0], 3
CASES = {
    **{f"arch:{a}": dict(arch=a) for a in ("suan", "lightsuan", "dnn", "din", "bst", "hstu")},
    **{f"mixer:{m}": dict(mixer=m) for m in sorted(MIXERS)},
    "position:rope": dict(position="rope"), "position:none": dict(position="none"),
    "head:histograph": dict(head="histograph"), "layer_router": dict(layer_router=True),
    "ablate": dict(ablate="fixed:0;stale_qk:1"), "calibrated": dict(sink_beta=0.3, sink_tau=1.5),
    "authors": dict(wiring="authors", candidate_in_head=True, pool_history=True),
    "branches": dict(wiring="branches", candidate_in_head=False, pool_history=False),
    "pool_inputs": dict(pool_inputs=True), "din_unit": dict(arch="din", din_weights="unit"),
}


# the tolerances above were measured at these sizes (a wider head makes perturbed logits larger, and
# fp32 rounding with them), so the model keeps them whatever the grade table says
SIZES = dict(head_widths=(128, 64), context_dim=16)

@pytest.fixture(scope="module")
def fmap(tiny_synthetic) -> FeatureMap:
    return FeatureMap.load(tiny_synthetic / "data" / "feature_map.json")


def _model(fmap: FeatureMap, arch: str = "suan", **options) -> torch.nn.Module:
    """A 2-layer model (history cut to 20) with every parameter perturbed, so zero-initialised paths matter."""
    torch.manual_seed(0)
    model = ctr.build_model(ModelConfig.from_grade(arch, 2, seq_len=DATA_WIDTH, **SIZES, **options), fmap)
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
    torch.testing.assert_close(trimmed, full, atol=EVAL_ATOL_SCALE * float(full.abs().max()), rtol=RTOL)


def test_width_is_the_longest_history_and_the_full_width_when_exporting(monkeypatch):
    lengths = torch.tensor(LENGTHS)
    assert history_width(lengths, 20) == 5
    assert history_width(lengths, 4) == 4  # never wider than the model reads
    assert history_width(torch.zeros(3, dtype=torch.int64), 20) == 1  # one slot for empty histories
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert history_width(lengths, 20) == 20


def _spread_batch(fmap: FeatureMap, rows: int = 24) -> dict[str, torch.Tensor]:
    """Many short histories and a few full ones (as on P-AZ), one candidate per row, with labels."""
    gen = torch.Generator().manual_seed(2)
    lengths = torch.tensor([DATA_WIDTH if i % 8 == 0 else i % 4 for i in range(rows)])
    batch = example_batch(fmap, seq_len=DATA_WIDTH, batch=rows)
    batch["hist_len"] = lengths
    pad = torch.arange(DATA_WIDTH).unsqueeze(0) >= lengths.unsqueeze(1)  # [B, L]
    for name in ("hist_item_id", "hist_cate_id", "hist_action"):
        batch[name] = torch.randint(2, fmap.field(name).vocab_size, batch[name].shape, generator=gen)
        batch[name][pad] = 0
    batch["hist_ts"] = torch.sort(torch.randint(0, 10**6, (rows, DATA_WIDTH), generator=gen), dim=1).values
    batch["hist_ts"][pad] = 0
    batch["target_ts"] = torch.full((rows,), 2 * 10**6)
    for f in (*fmap.by_role(Role.USER), *fmap.by_role(Role.CONTEXT), *fmap.by_role(Role.TARGET)):
        # every row its own user, context and candidate: a field constant over the batch has an exactly
        # zero gradient through the head's BatchNorm, so both runs would compare rounding noise
        batch[f.name] = torch.randint(2, f.vocab_size, (rows,), generator=gen)
    batch["dense"] = torch.randn(batch["dense"].shape, generator=gen)
    batch["label"] = (torch.arange(rows) % 3 == 0).float()
    return batch


def _loss_and_grads(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    logits = model(batch)  # [B]
    torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"]).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("case", sorted(c for c, o in CASES.items() if o.get("arch") not in ("dnn", "din")))
def test_training_in_length_chunks_equals_one_padded_pass(fmap, case, monkeypatch):
    model, batch = _model(fmap, **CASES[case]), _spread_batch(fmap)
    model.train()  # the head's BatchNorm uses batch statistics: chunking must not change them
    for m in model.modules():
        if type(m).__name__ == "RoutedAttention":
            m.eval()  # its Gumbel noise would differ between the two runs
    splits = []
    chunker = functools.partial(length_chunks, overhead=0)
    monkeypatch.setattr(ctr, "length_chunks", lambda *a: splits.append(chunker(*a)) or splits[-1])
    if model.batch_coupled:  # a training pass moves buffers (routing's centroids): one pass, never chunks
        model(batch)
        assert splits == []
        return
    chunked, chunked_grads = _loss_and_grads(model, batch)
    assert splits[0] is not None and len(splits[0]) == 8
    model.cfg = model.cfg.replace(chunk_by_length=False)  # the switch users have
    whole, whole_grads = _loss_and_grads(model, batch)
    assert len(splits) == 1
    torch.testing.assert_close(chunked, whole, atol=LOGIT_ATOL_SCALE * float(whole.abs().max()), rtol=RTOL)
    assert chunked_grads.keys() == whole_grads.keys()
    atol = GRAD_ATOL_SCALE * max(float(g.abs().max()) for g in whole_grads.values())
    for name, grad in whole_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, atol=atol, rtol=GRAD_RTOL, msg=lambda m, n=name: f"{n}: {m}")


def test_chunks_cover_every_row_once_shortest_first_and_only_when_they_pay(monkeypatch):
    az_like = torch.tensor([50] * 8 + [1, 2, 3, 4, 5, 6, 8, 12] * 31)  # 256 rows, most histories short
    chunks = length_chunks(az_like, 50)
    assert chunks is not None and len(chunks) >= 2
    assert sorted(torch.cat(chunks).tolist()) == list(range(256))
    maxima = [int(az_like[c].max()) for c in chunks]
    assert maxima == sorted(maxima) and maxima[-1] == 50 and maxima[0] < 50
    assert length_chunks(torch.full((256,), 40), 50) is None  # equal lengths: one pass is cheapest
    assert length_chunks(az_like, 50, overhead=10**6) is None  # chunks that cost more than they save
    assert length_chunks(torch.tensor([3]), 50) is None
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert length_chunks(az_like, 50) is None
