"""The real-data adapters on ../shared/data (skipped with the reason when it is absent)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from features.prepare import prepare
from features.protocols import P_AZ, P_ML
from features.schema import FeatureMap
from features.sources.amazon import load_amazon
from features.sources.movielens import load_movielens
from tests.conftest import shared_dataset


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    raw = load_movielens(shared_dataset("ml-100k"))
    out = tmp_path_factory.mktemp("ml") / "out"
    prepare(raw, P_ML, out, progress=False)
    return raw, out


@pytest.fixture(scope="module")
def amazon(tmp_path_factory):
    raw = load_amazon(shared_dataset("amazon-beauty-5core"))
    out = tmp_path_factory.mktemp("az") / "out"
    prepare(raw, P_AZ, out, progress=False)
    return raw, out


def test_movielens_p_ml_counts_from_first_principles(movielens):
    raw, out = movielens
    ev = raw.events
    assert ev.height == 100_000 and ev["user"].n_unique() == 943 and ev["item"].n_unique() == 1682
    # a sample is an event whose user has an event with a strictly smaller timestamp
    first_ts = ev.group_by("user").agg(pl.col("ts").min().alias("t0"))
    n_samples = ev.join(first_ts, on="user").filter(pl.col("ts") > pl.col("t0")).height
    stats = json.loads((out / "stats.json").read_text())
    rows = {s: stats["splits"][s]["rows"] for s in ("train", "valid", "test")}
    assert sum(rows.values()) == n_samples
    assert rows["train"] == int(n_samples * 0.8)
    assert rows["train"] + rows["valid"] == int(n_samples * 0.9)
    # label = rating >= 4 on the samples
    labels = ev.join(first_ts, on="user").filter(pl.col("ts") > pl.col("t0"))["label"]
    total_pos = sum(stats["splits"][s]["positive_rate"] * rows[s] for s in rows)
    assert round(total_pos) == int(labels.sum())


def test_movielens_histories_precede_targets_and_splits_follow_time(movielens):
    _, out = movielens
    last = {}
    for split in ("train", "valid", "test"):
        df = pl.read_parquet(out / split)
        bad = df.filter(pl.col("hist_ts").list.max() >= pl.col("target_ts"))
        assert bad.height == 0
        assert df["hist_ts"].list.len().max() <= 50
        last[split] = (df["target_ts"].min(), df["target_ts"].max())
    assert last["train"][1] <= last["valid"][0] and last["valid"][1] <= last["test"][0]
    fmap = FeatureMap.load(out / "feature_map.json")
    assert {f.name for f in fmap.fields} >= {"user_id", "age", "gender", "occupation", "hist_genre", "hist_rating"}


def test_amazon_p_az_counts_negatives_and_leave_last_out(amazon):
    raw, out = amazon
    ev = raw.events
    assert ev.height == 198_502 and ev["user"].n_unique() == 22_363
    stats = json.loads((out / "stats.json").read_text())
    users = 22_363
    positives = ev.height - users  # every event but each user's first
    rows = {s: stats["splits"][s]["rows"] for s in ("train", "valid", "test")}
    assert rows == {"train": 2 * (positives - 2 * users), "valid": 2 * users, "test": 2 * users}
    test = pl.read_parquet(out / "test")
    assert test["label"].to_list()[:4] == [1.0, 0.0, 1.0, 0.0]


def test_amazon_negatives_were_never_touched_by_their_user(amazon):
    raw, out = amazon
    vocab = pl.read_parquet(out / "vocab" / "item_id.parquet")
    id_to_raw = dict(zip(vocab["id"].to_list(), vocab["value"].to_list(), strict=True))
    touched = raw.events.group_by("user").agg(pl.col("item")).rows()
    user_items = {u: set(items) for u, items in touched}
    users_vocab = pl.read_parquet(out / "vocab" / "user_id.parquet")
    uid_to_raw = dict(zip(users_vocab["id"].to_list(), users_vocab["value"].to_list(), strict=True))
    df = pl.read_parquet(out / "train").filter(pl.col("label") == 0).head(5000)
    for uid, iid in zip(df["user_id"].to_list(), df["item_id"].to_list(), strict=True):
        if iid in id_to_raw:
            assert id_to_raw[iid] not in user_items[uid_to_raw[uid]]
    assert np.isclose(stats_pos_rate(out), 0.5)


def stats_pos_rate(out):
    stats = json.loads((out / "stats.json").read_text())
    return stats["splits"]["train"]["positive_rate"]
