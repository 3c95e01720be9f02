"""One feature code path: a request rebuilt from raw values encodes to exactly the offline arrays."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from features.collate import collate
from features.online import FeatureSpace, encode_request
from features.schema import Role
from features.transforms import time_context_exprs, time_context_values
from features.vocab import Vocab


def _decoder(data, vocab):
    v = Vocab.load(vocab, data / "vocab" / f"{vocab}.parquet")
    table = {i: value for i, value in enumerate(v.values, start=2)}
    return lambda i: table.get(int(i), "never-seen-in-training")  # OOV ids come back as an unseen value


def _request_from_row(data, space, batch, b):
    fmap = space.fmap
    dec = {name: _decoder(data, name) for name in fmap.vocab_sizes()}
    n = int(batch["hist_len"][b])
    history = []
    for k in range(n):
        entry = {vocab: dec[vocab](batch[name][b, k]) for vocab, name in space.history_fields().items()}
        entry["ts"] = int(batch["hist_ts"][b, k])
        history.append(entry)
    time_ctx = set(space.time_context)
    return {
        "user": {f.name: dec[f.vocab](batch[f.name][b]) for f in fmap.by_role(Role.USER)},
        "context": {f.name: dec[f.vocab](batch[f.name][b]) for f in fmap.by_role(Role.CONTEXT) if f.name not in time_ctx},
        "timestamp": int(batch["target_ts"][b]),
        "history": history,
        "candidates": [{name: dec[vocab](batch[name][b]) for name, vocab in space.candidate_fields().items()}],
    }


def test_online_encoding_equals_offline_shards(tiny_synthetic):
    data = tiny_synthetic / "data"
    space = FeatureSpace.load(data)
    table = pq.read_table(next((data / "test").glob("*.parquet"))).slice(0, 40)
    batch = collate(table, space.fmap)
    for b in range(table.num_rows):
        got = encode_request(space, _request_from_row(data, space, batch, b))
        n = int(batch["hist_len"][b])
        for f in (*space.fmap.by_role(Role.USER), *space.fmap.by_role(Role.CONTEXT)):
            assert got[f.name][0] == batch[f.name][b], f.name
        for name in (*space.history_fields().values(), "hist_ts"):
            assert got[name][0, :n].tolist() == batch[name][b, :n].tolist(), name
        np.testing.assert_array_equal(got["dense"][0], batch["dense"][b])
        for name in space.candidate_fields():
            assert got[name][0, 0] == batch[name][b]


def test_online_history_is_time_ordered_and_cut_to_the_most_recent(tiny_synthetic):
    space = FeatureSpace.load(tiny_synthetic / "data")
    item = next(iter(space.lookups["item_id"]))
    history = [{"item_id": item, "ts": t} for t in range(space.max_len + 10, 0, -1)]  # newest first
    got = encode_request(space, {"timestamp": 10**6, "history": history, "candidates": [{"item_id": "x"}] * 3})
    assert got["hist_len"].tolist() == [space.max_len]
    assert got["hist_ts"][0].tolist() == list(range(11, space.max_len + 11))
    assert got["item_id"].shape == (1, 3) and (got["item_id"] == 1).all()  # unknown raw id → OOV
    empty = encode_request(space, {"timestamp": 5, "history": [], "candidates": [{"item_id": item}]})
    assert empty["hist_len"].tolist() == [0] and empty["hist_item_id"].shape == (1, 1)


@pytest.mark.parametrize("ts", [0, 1, 3599, 86399, 1_700_000_000, 1_704_067_200])
def test_numpy_time_context_equals_polars(ts):
    names = ("hour", "weekday")
    want = pl.DataFrame({"ts": [ts]}).select(time_context_exprs(pl.col("ts"), names))
    got = time_context_values(np.array([ts]), names)
    assert {n: int(got[n][0]) for n in names} == {n: want[n][0] for n in names}


def test_dict_lookup_equals_polars_encode(tiny_synthetic):
    vocab = Vocab.load("item_id", tiny_synthetic / "data" / "vocab" / "item_id.parquet")
    raw = [*vocab.values[:50], "unseen", None]
    space = FeatureSpace.load(tiny_synthetic / "data")
    want = vocab.encode(pl.Series(raw).fill_null("__missing__")).to_list()
    assert space.encode("item_id", raw).tolist() == want
