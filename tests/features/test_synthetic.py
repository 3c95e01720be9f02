"""The synthetic world's difficulty knob: planted item-to-item transitions are exposed and clicked more."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features.sources.synthetic import TASTE_WINDOW, SynthConfig, generate, make_world


def _follow_up_stats(root, cfg: SynthConfig) -> tuple[float, float]:
    """Share of events that follow the user's last click, and their mean logit minus the others'."""
    world = make_world(cfg)
    ev = pl.read_parquet(root / "events").sort("user_id", "timestamp")
    users, items = ev["user_id"].to_numpy(), ev["item_id"].to_numpy()
    labels, p = ev["label"].to_numpy(), ev["p_true"].to_numpy().astype(np.float64)
    follows = np.zeros(len(ev), dtype=bool)
    last, user = -1, -1
    for k in range(len(ev)):  # the last clicked item before each event, per user (generation order)
        if users[k] != user:
            last, user = -1, users[k]
        follows[k] = last >= 0 and items[k] in world.follow_ups[last]
        if labels[k]:
            last = items[k]
    logit = np.log(p / (1 - p))
    return float(follows.mean()), float(logit[follows].mean() - logit[~follows].mean())


@pytest.mark.parametrize("difficulty", [0.0, 1.0])
def test_difficulty_plants_transitions_only_when_asked(tmp_path, difficulty):
    cfg = SynthConfig(users=300, items=400, categories=10, events_per_user=30, seed=5, difficulty=difficulty)
    generate(cfg, tmp_path / "w", progress=False)
    share, lift = _follow_up_stats(tmp_path / "w", cfg)
    if difficulty == 0:
        assert share < 0.03  # only chance hits (2 of 400 items per click, concentrated by popularity)
    else:
        assert share > 0.08  # 0.15 of exposures after a first click
        assert lift > 1.0  # +2 on the logit, diluted by the other terms


def _taste_term(root, cfg: SynthConfig) -> np.ndarray:
    """<h, z_target> recomputed from the written events: h sums the taste of the clicked items among the
    user's previous TASTE_WINDOW events over (clicks + 1), as the docstring defines it."""
    world = make_world(cfg)
    ev = pl.read_parquet(root / "events").sort("user_id", "timestamp")
    users, items, labels = ev["user_id"].to_numpy(), ev["item_id"].to_numpy(), ev["label"].to_numpy()
    term = np.zeros(len(ev))
    for k in range(len(ev)):
        lo = k
        while lo > 0 and users[lo - 1] == users[k] and k - lo < TASTE_WINDOW:
            lo -= 1
        clicked = items[lo:k][labels[lo:k] == 1]
        if len(clicked):
            term[k] = world.taste[clicked].sum(0) @ world.taste[items[k]] / (len(clicked) + 1)
    return term


def test_taste_changes_clicks_never_exposure_and_weight_zero_is_the_plain_world(tmp_path):
    base = dict(users=200, items=300, categories=10, events_per_user=20, seed=3)
    worlds = {name: SynthConfig(**base, **extra) for name, extra in [
        ("plain", {}), ("off", {"taste_dims": 7, "taste_decay": 2.0}), ("on", {"taste_weight": 3.0})]}
    events = {}
    for name, cfg in worlds.items():
        generate(cfg, tmp_path / name, progress=False)
        events[name] = pl.read_parquet(tmp_path / name / "events")
    assert events["off"].equals(events["plain"])  # weight 0: the spectrum's settings change nothing
    same = ["user_id", "item_id", "timestamp", "device"]
    assert events["on"].select(same).equals(events["plain"].select(same))  # exposure untouched
    assert not events["on"]["label"].equals(events["plain"]["label"])


def test_the_planted_taste_term_is_in_the_click_logit_with_its_weight(tmp_path):
    cfg = SynthConfig(users=400, items=300, categories=10, events_per_user=25, seed=4, taste_weight=2.0,
                      taste_dims=32)
    generate(cfg, tmp_path / "w", progress=False)
    ev = pl.read_parquet(tmp_path / "w" / "events").sort("user_id", "timestamp")
    p = np.clip(ev["p_true"].to_numpy().astype(np.float64), 1e-6, 1 - 1e-6)
    logit, term = np.log(p / (1 - p)), _taste_term(tmp_path / "w", cfg)
    assert term.std() > 0.2  # the term is there, not a rounding
    # the other terms are independent of the random taste vectors, so the slope of the logit on the
    # recomputed term is its weight (another window or normalisation would give another slope)
    slope = np.cov(logit, term)[0, 1] / term.var()
    assert slope == pytest.approx(cfg.taste_weight, rel=0.1)


def test_the_taste_spectrum_decays_as_configured():
    cfg = SynthConfig(items=2000, taste_dims=64, taste_decay=0.75, taste_weight=1.0)
    var = make_world(cfg).taste.var(0)  # [K] = lam_k: z_i ~ N(0, 1) scaled by sqrt(lam_k)
    slope = np.polyfit(np.log(np.arange(1, 65)), np.log(var), 1)[0]
    assert slope == pytest.approx(-0.75, abs=0.08)
    assert (var**2).sum() == pytest.approx(1.0, rel=0.1)  # sum lam_k^2 = 1: the weight alone sets the term's size


def test_the_summary_gives_each_widths_ceiling_falling_to_the_oracle(tmp_path):
    cfg = SynthConfig(users=300, items=200, categories=10, events_per_user=20, seed=6, taste_weight=3.0,
                      taste_dims=64)
    ceiling = generate(cfg, tmp_path / "w", progress=False)["taste_ceiling_logloss"]
    ev = pl.read_parquet(tmp_path / "w" / "events")
    p, y = np.clip(ev["p_true"].to_numpy().astype(np.float64), 1e-7, 1 - 1e-7), ev["label"].to_numpy()
    oracle = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert ceiling["oracle"] == pytest.approx(oracle, rel=1e-4)  # every direction kept: the true probability
    by_width = [ceiling[k] for k in ceiling if k != "oracle"]
    assert list(ceiling)[:3] == ["0", "4", "6"] and "64" not in ceiling  # widths below K only
    assert all(a > b for a, b in zip(by_width, [*by_width[1:], ceiling["oracle"]], strict=True))  # each width sees more
    assert by_width[0] - ceiling["oracle"] > 0.05  # the term is worth learning
    assert "taste_ceiling_logloss" not in generate(cfg.replace(taste_weight=0.0), tmp_path / "p", progress=False)
