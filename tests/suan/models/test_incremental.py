"""Incremental scoring: a per-user state appended one behaviour at a time equals the full recompute."""

from __future__ import annotations

import pytest
import torch

from features.schema import FeatureMap, Role
from suan.config import ModelConfig
from suan.mixers.registry import MIXERS
from suan.models.ctr import build_model
from suan.models.incremental import IncrementalCTR
from suan.utils.config import ConfigError

# fp32 logits (|logit| up to ~15 with perturbed weights): the state's running sums against the full
# forward's chunked/cumsum forms differ only in summation order, an absolute noise proportional to the
# batch's largest logit (measured up to 4.7e-6 of it over every O(1) mixer x 0/1/5/13 behaviours x 3 seeds);
# dropping the last behaviour from the state moves the batch's scores by >= 42 % of its largest logit in every
# one of those cases (1/5/13 behaviours), so the bound still catches a behaviour missed or counted twice
ATOL_SCALE = 1e-5
RTOL = 1e-5
O1_MIXERS = tuple(name for name, spec in MIXERS.items() if spec.constant_state)
SEQ_LEN = 8  # positions learned; histories longer than this are read whole, their positions capped


def assert_scores_close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, atol=ATOL_SCALE * max(1.0, float(want.abs().max())), rtol=RTOL)


@pytest.fixture(scope="module")
def fmap(tiny_synthetic) -> FeatureMap:
    return FeatureMap.load(tiny_synthetic / "data" / "feature_map.json")


def _model(fmap: FeatureMap, mixer: str, arch: str = "suan", seed: int = 0, **options):
    """A 2-layer incremental model with every parameter perturbed, so zero-initialised paths matter."""
    torch.manual_seed(seed)
    cfg = ModelConfig.from_grade(arch, 2, mixer=mixer, seq_len=SEQ_LEN, backend="torch", incremental=True, **options)
    model = build_model(cfg, fmap).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _batch(fmap: FeatureMap, rows: int, n_hist: int, n_cand: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """``rows`` users with ``n_hist`` behaviours each (sorted times, some equal) and ``n_cand`` candidates."""
    g = torch.Generator().manual_seed(seed)
    width = max(n_hist, 1)
    batch = {"hist_len": torch.full((rows,), n_hist, dtype=torch.int64),
             "dense": torch.randn(rows, len(fmap.by_role(Role.DENSE)), generator=g)}
    for f in (*fmap.by_role(Role.USER), *fmap.by_role(Role.CONTEXT)):
        batch[f.name] = torch.randint(0, f.vocab_size, (rows,), generator=g)
    for f in fmap.by_role(Role.SEQ):
        ids = torch.randint(1, f.vocab_size, (rows, width), generator=g)
        batch[f.name] = torch.where(torch.arange(width) < n_hist, ids, 0)
    gaps = torch.randint(0, 10**5, (rows, width), generator=g) * (torch.rand(rows, width, generator=g) > 0.2)
    batch["hist_ts"] = 1_600_000_000 + torch.cumsum(gaps, dim=1)
    batch["target_ts"] = batch["hist_ts"][:, -1] + torch.randint(1, 10**5, (rows,), generator=g)
    for f in fmap.by_role(Role.TARGET):
        batch[f.name] = torch.randint(0, f.vocab_size, (rows, n_cand), generator=g)
    return batch


def _replay(inc: IncrementalCTR, batch: dict[str, torch.Tensor], n_hist: int) -> dict[str, torch.Tensor]:
    fmap_fields = [*inc.model.embed.user_fields, *inc.model.embed.seq_fields, "hist_ts"]
    state = inc.init_state(batch["hist_len"].shape[0])
    for t in range(n_hist):
        step = {f: batch[f][:, t] if batch[f].dim() == 2 else batch[f] for f in fmap_fields}
        state = inc.append(state, step)
    return state


def _state_shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("mixer", O1_MIXERS)
@pytest.mark.parametrize("n_hist", [0, 1, 5, 13], ids=lambda n: f"hist{n}")
def test_incremental_scores_equal_full_recompute(fmap, mixer, n_hist):
    model = _model(fmap, mixer)
    inc = IncrementalCTR(model)
    assert not inc.state_grows
    batch = _batch(fmap, rows=3, n_hist=n_hist, n_cand=4)
    with torch.no_grad():
        full = model(batch)  # [B, C]
        state = _replay(inc, batch, n_hist)
        got = inc.score(state, batch)
        one = inc.score(state, {**batch, **{f.name: batch[f.name][:, 2] for f in fmap.by_role(Role.TARGET)}})
    assert got.shape == full.shape == (3, 4)
    assert_scores_close(got, full)
    assert_scores_close(one, full[:, 2])
    assert _state_shapes(state) == _state_shapes(inc.init_state(3)), "the state grew with the history"


@pytest.mark.parametrize("mixer", O1_MIXERS)
def test_float64_incremental_scores_equal_full_recompute_to_rounding(fmap, mixer):
    # in float64 the two summation orders agree to ~1e-12: a bound 1e5 tighter than fp32's, which an op that
    # rounds to float32 on the way (or a behaviour counted twice) breaks
    model = _model(fmap, mixer).double()
    inc = IncrementalCTR(model)
    batch = _batch(fmap, rows=3, n_hist=13, n_cand=4)
    batch["dense"] = batch["dense"].double()
    with torch.no_grad():
        full = model(batch)  # [B, C]
        got = inc.score(_replay(inc, batch, 13), batch)
    assert got.dtype == full.dtype == torch.float64
    torch.testing.assert_close(got, full, atol=1e-9 * max(1.0, float(full.abs().max())), rtol=1e-9)


@pytest.mark.parametrize(("arch", "options"), [("bst", {}), ("hstu", {}),
                                               ("suan", dict(wiring="authors", candidate_in_head=True)),
                                               ("suan", dict(wiring="authors", candidate_in_head=True, pool_history=True)),
                                               ("bst", dict(pool_history=True)),
                                               ("suan", dict(pool_history=False, pool_inputs=True))],
                         ids=["bst", "hstu", "suan-authors-wiring", "suan-authors-pooled", "bst-pooled",
                              "suan-pooled-inputs"])
def test_other_blocks_over_a_recurrent_mixer_are_incremental_too(fmap, arch, options):
    model = _model(fmap, "gated_deltanet", arch=arch, **options)
    batch = _batch(fmap, rows=2, n_hist=11, n_cand=3, seed=4)
    with torch.no_grad():
        inc = IncrementalCTR(model)
        assert_scores_close(inc.score(_replay(inc, batch, 11), batch), model(batch))


def test_a_growing_state_mixer_is_incremental_but_not_o1(fmap):
    model = _model(fmap, "nats_hybrid")
    inc = IncrementalCTR(model)
    assert inc.state_grows
    batch = _batch(fmap, rows=2, n_hist=9, n_cand=3, seed=5)
    with torch.no_grad():
        assert_scores_close(inc.score(_replay(inc, batch, 9), batch), model(batch))


def test_append_leaves_its_input_state_unchanged(fmap):
    inc = IncrementalCTR(_model(fmap, "aaren"))
    batch = _batch(fmap, rows=2, n_hist=3, n_cand=2)
    with torch.no_grad():
        state = _replay(inc, batch, 2)
        before = {k: v.clone() for k, v in state.items()}
        _replay(inc, batch, 3)
        step = {f: batch[f][:, 2] if batch[f].dim() == 2 else batch[f]
                for f in [*inc.model.embed.user_fields, *inc.model.embed.seq_fields, "hist_ts"]}
        new = inc.append(state, step)
    assert all(torch.equal(before[k], state[k]) for k in before)
    assert int(new["n"][0]) == 3


def test_history_tokens_do_not_depend_on_the_request_time(fmap):
    """The point of ``incremental``: moving the impression time changes only the candidates' own gap."""
    model = _model(fmap, "linear_attn")
    batch = _batch(fmap, rows=2, n_hist=6, n_cand=2)
    later = {**batch, "target_ts": batch["target_ts"] + 10**6}
    with torch.no_grad():
        inc = IncrementalCTR(model)
        state = _replay(inc, batch, 6)
        assert_scores_close(inc.score(state, later), model(later))


@pytest.mark.parametrize("bad", [dict(mixer="softmax_rel"), dict(mixer="sparse"), dict(mixer="aaren", head="histograph"),
                                 dict(mixer="aaren", layer_router=True)], ids=str)
def test_incremental_needs_a_recurrent_mixer_and_the_last_head(bad):
    with pytest.raises(ConfigError):
        ModelConfig.from_grade("suan", 1, incremental=True, **bad)
    with pytest.raises(ConfigError):
        ModelConfig.from_grade("din", 1, incremental=True)


def test_incremental_config_round_trips_and_defaults_off(fmap):
    cfg = ModelConfig.from_grade("suan", 1, mixer="aaren", incremental=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_grade("suan", 1).incremental is False
    with pytest.raises(ValueError, match="incremental=True"):
        IncrementalCTR(build_model(ModelConfig.from_grade("suan", 0, mixer="aaren"), fmap))
