"""Protocols on hand-made logs: sample counts per split from first principles, negatives, leakage."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.prepare import prepare
from features.protocols import P_AZ, P_ML, PROTOCOLS, assign_splits, sample_negatives
from features.rawlog import log_from_rows
from features.schema import OOV_ID


def _read(out, split):
    return pl.read_parquet(out / split)


def test_p_ml_counts_on_a_hand_made_log(tmp_path):
    # user a: 6 events, the 3rd and 4th share a timestamp; user b: both at one time; user c: one event
    rows = [("a", 1, 10, 1), ("b", 2, 50, 0), ("a", 2, 20, 0), ("a", 3, 30, 1), ("a", 4, 30, 1),
            ("c", 9, 5, 1), ("b", 3, 50, 1), ("a", 5, 40, 0), ("a", 6, 60, 1)]
    # samples = events with a strictly earlier event of their user: a@20, a@30 (x2), a@40, a@60 → 5
    # b's two events share ts 50 and c has one event: none of theirs are samples
    # global time split of 5 samples: int(5*0.8)=4 train, int(5*0.9)=4 → 0 valid, 1 test
    prepare(log_from_rows(rows), P_ML, tmp_path / "out", progress=False)
    counts = {s: _read(tmp_path / "out", s).height for s in ("train", "valid", "test")}
    assert counts == {"train": 4, "valid": 0, "test": 1}
    test = _read(tmp_path / "out", "test")
    assert test["target_ts"].to_list() == [60]
    # both ts=30 events see only the events at 10 and 20
    train = _read(tmp_path / "out", "train")
    at30 = train.filter(pl.col("target_ts") == 30)
    assert at30["hist_ts"].to_list() == [[10, 20], [10, 20]]


def test_p_ml_split_fractions_follow_target_time_then_row(tmp_path):
    # one user, 21 events at distinct times → 20 samples: 16 train, 2 valid, 2 test in time order
    rows = [("u", i, 100 + i, i % 2) for i in range(21)]
    prepare(log_from_rows(rows), P_ML, tmp_path / "out", progress=False)
    ts = {s: sorted(_read(tmp_path / "out", s)["target_ts"].to_list()) for s in ("train", "valid", "test")}
    assert ts == {"train": list(range(101, 117)), "valid": [117, 118], "test": [119, 120]}


def test_p_az_counts_negatives_and_leave_last_out(tmp_path):
    # users in file order; u1 touches items 1-4, u2 items 2 and 5, u3 item 6 only
    rows = [("u1", 1, 1), ("u1", 2, 2), ("u1", 3, 3), ("u1", 4, 4), ("u2", 2, 1), ("u2", 5, 9), ("u3", 6, 3)]
    prepare(log_from_rows(rows, label=False), P_AZ, tmp_path / "out", progress=False)
    # positives: u1 → 3 (items 2,3,4), u2 → 1 (item 5), u3 → 0; each with exactly one negative
    # u1: item 2 train, 3 valid, 4 test; u2: its only positive is its last → test
    counts = {s: _read(tmp_path / "out", s).height for s in ("train", "valid", "test")}
    assert counts == {"train": 2, "valid": 2, "test": 4}
    for split in ("train", "valid", "test"):
        df = _read(tmp_path / "out", split)
        # each positive is immediately followed by its negative, with the same history and time
        assert df["label"].to_list() == [1.0, 0.0] * (df.height // 2)
        pos, neg = df[::2], df[1::2]
        assert pos["hist_item_id"].to_list() == neg["hist_item_id"].to_list()
        assert pos["target_ts"].to_list() == neg["target_ts"].to_list()


def test_negatives_are_never_items_the_user_touched_and_are_deterministic():
    rng = np.random.default_rng(0)
    event_user = np.sort(rng.integers(0, 30, 400))
    event_item = rng.integers(0, 50, 400)
    sample_user = event_user[np.r_[False, event_user[1:] == event_user[:-1]]]
    neg = sample_negatives(2, 2026, sample_user, event_user, event_item)
    for s, u in enumerate(sample_user):
        touched = set(event_item[event_user == u].tolist())
        assert not touched & set(neg[s].tolist())
        assert set(neg[s].tolist()) <= set(event_item.tolist())
    again = sample_negatives(2, 2026, sample_user, event_user, event_item)
    other = sample_negatives(2, 2027, sample_user, event_user, event_item)
    np.testing.assert_array_equal(neg, again)
    assert (neg != other).any()


def test_vocabulary_is_fitted_on_train_only(tmp_path):
    # 19 samples: 15 train, 2 valid, 2 test; the test targets are items 7 and 99, seen nowhere in train
    rows = [("u", i % 3, 10 + i, 1) for i in range(18)] + [("u", 7, 100, 1), ("u", 99, 200, 0)]
    prepare(log_from_rows(rows), P_ML, tmp_path / "out", progress=False)
    test = _read(tmp_path / "out", "test")
    valid = _read(tmp_path / "out", "valid")
    assert test.sort("target_ts")["item_id"].to_list() == [OOV_ID, OOV_ID]
    assert test.sort("target_ts")["hist_item_id"].to_list()[-1][-1] == OOV_ID  # item 7 in the history
    assert OOV_ID not in valid["item_id"].to_list()
    train = _read(tmp_path / "out", "train")
    assert OOV_ID not in train["item_id"].to_list()
    vocab = pl.read_parquet(tmp_path / "out" / "vocab" / "item_id.parquet")
    assert set(vocab["value"].to_list()) == {"0", "1", "2"}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9), st.integers(0, 30), st.integers(0, 1)),
                min_size=1, max_size=60),
       st.sampled_from(["P-ML", "time-split", "leave-last-out"]), st.integers(1, 4))
def test_no_history_event_at_or_after_its_target(tmp_path_factory, rows, protocol, max_len):
    out = tmp_path_factory.mktemp("p") / "out"
    proto = PROTOCOLS[protocol].replace(max_seq_len=max_len)
    raw = log_from_rows(rows)
    try:
        prepare(raw, proto, out, progress=False)
    except ValueError as exc:
        assert "no events" in str(exc)
        return
    for split in ("train", "valid", "test"):
        df = _read(out, split)
        for hist, target in zip(df["hist_ts"].to_list(), df["target_ts"].to_list(), strict=True):
            assert 1 <= len(hist) <= max_len
            if proto.order == "time":
                assert all(t < target for t in hist)
            assert hist == sorted(hist) or proto.order == "file"


def test_assign_splits_leave_last_out_per_user():
    user = np.array([0, 0, 0, 0, 1, 2, 2])
    split = assign_splits(P_AZ, user, np.zeros(7), np.arange(7))
    assert split.tolist() == [0, 0, 1, 2, 2, 1, 2]


@pytest.mark.parametrize("bad", [{"order": "random"}, {"max_seq_len": 0}, {"train_frac": 0.95}])
def test_protocol_config_rejects_bad_values(bad):
    from suan.utils.config import ConfigError

    with pytest.raises(ConfigError):
        P_ML.replace(**bad)
