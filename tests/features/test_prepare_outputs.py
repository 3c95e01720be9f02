"""Prepared output: feature map contract, determinism by seed, stats, synthetic planted structure."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
import pytest

from features.prepare import prepare
from features.protocols import PROTOCOLS
from features.schema import FeatureMap, Role
from features.sources.synthetic import SynthConfig, generate, load_synthetic
from features.vocab import Vocab
from suan.utils.config import ConfigError
from suan.utils.metrics import auc


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.parquet")):
        h.update(pl.read_parquet(p).hash_rows().to_numpy().tobytes())
    return h.hexdigest()


def test_synthetic_is_deterministic_by_seed(tmp_path):
    cfg = SynthConfig(users=60, items=50, categories=5, events_per_user=8, seed=3, block_users=25)
    for name in ("a", "b"):
        generate(cfg, tmp_path / name, progress=False)
    generate(cfg.replace(seed=4), tmp_path / "c", progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    for name in ("a", "b"):
        prepare(load_synthetic(tmp_path / name), PROTOCOLS["time-split"], tmp_path / f"p{name}", progress=False)
    assert _digest(tmp_path / "pa") == _digest(tmp_path / "pb")


def test_feature_map_describes_every_column_and_its_hash_guards_edits(tiny_synthetic):
    data = tiny_synthetic / "data"
    fmap = FeatureMap.load(data / "feature_map.json")
    df = pl.read_parquet(data / "train")
    assert {f.name for f in fmap.fields} | set(fmap.extra["non_feature_columns"]) == set(df.columns)
    for f in fmap.fields:
        if f.vocab:
            values = df[f.name].explode() if f.role == Role.SEQ else df[f.name]
            assert values.min() >= 0 and values.max() < f.vocab_size
    assert fmap.vocab_sizes()["item_id"] == Vocab.load("item_id", data / "vocab" / "item_id.parquet").size
    stats = json.loads((data / "stats.json").read_text())
    assert stats["feature_map_hash"] == fmap.hash
    edited = json.loads((data / "feature_map.json").read_text())
    edited["max_seq_len"] = 99
    (data.parent / "edited.json").write_text(json.dumps(edited))
    with pytest.raises(ConfigError, match="does not match its hash"):
        FeatureMap.load(data.parent / "edited.json")


def test_stats_match_the_shards(tiny_synthetic):
    data = tiny_synthetic / "data"
    stats = json.loads((data / "stats.json").read_text())
    for split in ("train", "valid", "test"):
        df = pl.read_parquet(data / split)
        s = stats["splits"][split]
        assert s["rows"] == df.height
        assert s["users"] == df["user_key"].n_unique()
        assert s["positive_rate"] == pytest.approx(df["label"].mean())
        assert s["hist_len"]["max"] == df["hist_ts"].list.len().max()


def test_synthetic_plants_a_learnable_recency_signal(tiny_synthetic):
    """The oracle beats chance clearly, and the most recent behaviours carry signal of their own."""
    df = pl.concat([pl.read_parquet(tiny_synthetic / "data" / s) for s in ("train", "valid", "test")])
    y = df["label"].to_numpy()
    assert auc(y, df["oracle_p"].to_numpy()) > 0.72
    # share of the last 3 behaviours in the target's category, clicks weighted: a recency-only feature
    last_cates = df["hist_cate_id"].list.tail(3).to_list()
    last_acts = df["hist_action"].list.tail(3).to_list()
    click_id = _vocab_id(tiny_synthetic / "data", "action", "click")
    score = np.array([sum((c == t) * (1.0 if a == click_id else 0.25) for c, a in zip(cs, acts, strict=True))
                      for cs, acts, t in zip(last_cates, last_acts, df["cate_id"].to_list(), strict=True)])
    recent = auc(y, score)
    # the same feature over the oldest 3 behaviours of long histories is weaker: recency matters
    long = df.filter(pl.col("hist_ts").list.len() >= 12)
    old_score = np.array([sum(c == t for c in cs) for cs, t in
                          zip(long["hist_cate_id"].list.head(3).to_list(), long["cate_id"].to_list(), strict=True)])
    print(f"oracle/recent/oldest AUC: {auc(y, df['oracle_p'].to_numpy()):.3f} {recent:.3f} {auc(long['label'].to_numpy(), old_score):.3f}")
    assert recent > 0.55
    assert auc(long["label"].to_numpy(), old_score) < recent - 0.03


def _vocab_id(data, vocab, value):
    v = Vocab.load(vocab, data / "vocab" / f"{vocab}.parquet")
    return v.values.index(value) + 2


def test_oracle_auc_is_recorded_as_the_ceiling(tiny_synthetic):
    stats = json.loads((tiny_synthetic / "data" / "stats.json").read_text())
    test = pl.read_parquet(tiny_synthetic / "data" / "test")
    assert stats["splits"]["test"]["oracle_auc"] == pytest.approx(auc(test["label"].to_numpy(),
                                                                       test["oracle_p"].to_numpy()))
    y, prob = test["label"].to_numpy(), test["oracle_p"].to_numpy().astype(np.float64)
    bayes = -np.mean(y * np.log(prob) + (1 - y) * np.log(1 - prob))
    assert stats["splits"]["test"]["oracle_logloss"] == pytest.approx(bayes, rel=1e-6)


def test_popularity_auc_ranks_candidates_by_their_training_clicks(tiny_synthetic):
    import polars as pl

    from features.stats import popularity_auc
    from suan.utils.metrics import auc

    data = tiny_synthetic / "data"
    train = pl.read_parquet(data / "train")
    clicks: dict[int, int] = {}
    for item, label in zip(train["item_id"].to_list(), train["label"].to_list(), strict=True):
        clicks[item] = clicks.get(item, 0) + int(label == 1)
    test = pl.read_parquet(data / "test")
    want = auc(test["label"].to_numpy(), [float(clicks.get(i, 0)) for i in test["item_id"].to_list()])
    assert popularity_auc(data, "test") == want
    assert 0.4 < want < 0.9
