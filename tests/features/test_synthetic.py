"""The synthetic world's difficulty knob: planted item-to-item transitions are exposed and clicked more."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features.sources.synthetic import SynthConfig, generate, make_world


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
