"""The DataModule streams every row exactly once, padded correctly, split across workers and ranks."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from features.collate import pad_lists
from pipelines.datamodule import ShardDataModule, ShardStream


def _rows(batches):
    return sorted(zip(torch.cat([b["user_key"] for b in batches]).tolist(),
                      torch.cat([b["target_ts"] for b in batches]).tolist(),
                      torch.cat([b["item_id"] for b in batches]).tolist(), strict=True))


def test_batches_cover_the_split_once_with_padded_histories(tiny_synthetic):
    data = tiny_synthetic / "data"
    dm = ShardDataModule(data, batch_size=64, num_workers=2)
    batches = list(dm.train_dataloader())
    df = pl.read_parquet(data / "train")
    want = sorted(zip(df["user_key"].to_list(), df["target_ts"].to_list(), df["item_id"].to_list(), strict=True))
    assert _rows(batches) == want
    b = batches[0]
    L = dm.fmap.max_seq_len
    assert b["hist_item_id"].shape == (64, L) and b["hist_ts"].dtype == torch.int64
    assert b["dense"].shape == (64, 2) and b["label"].dtype == torch.float32
    for i in range(8):
        n = int(b["hist_len"][i])
        assert (b["hist_item_id"][i, n:] == 0).all() and (b["hist_item_id"][i, :n] > 0).all()


def test_ranks_read_disjoint_units_and_shuffle_is_seeded(tiny_synthetic):
    data = tiny_synthetic / "data"
    dm = ShardDataModule(data, batch_size=50)
    files = sorted((data / "train").glob("*.parquet"))
    parts = [list(ShardStream(files, dm.fmap, 50, shuffle=True, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    a, b = _rows(parts[0]), _rows(parts[1])
    n = pl.read_parquet(data / "train").height
    # DDP ranks get disjoint rows and exactly the same count (equal batch counts avoid a DDP hang)
    assert not set(a) & set(b)
    assert len(a) == len(b) == n // 2
    assert [len(x["label"]) for x in parts[0]] == [len(x["label"]) for x in parts[1]]
    order = [torch.cat([x["target_ts"] for x in ShardStream(files, dm.fmap, 50, shuffle=True, seed=s)]).tolist()
             for s in (1, 1, 2)]
    assert order[0] == order[1] and order[0] != order[2]
    stream = ShardStream(files, dm.fmap, 50, shuffle=True, seed=1)
    stream.set_epoch(1)
    assert torch.cat([x["target_ts"] for x in stream]).tolist() != order[0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(1, 99), max_size=9), min_size=1, max_size=8), st.integers(1, 6))
def test_pad_lists_keeps_the_most_recent(lists, max_len):
    values, lengths = pad_lists(pa.array(lists, type=pa.list_(pa.int64())), max_len, np.int64)
    for row, src in enumerate(lists):
        kept = src[-max_len:] if src else []
        assert lengths[row] == len(kept)
        assert values[row, : len(kept)].tolist() == kept
        assert (values[row, len(kept):] == 0).all()


def test_train_fraction_is_nested_deterministic_and_counted_exactly(tiny_synthetic):
    data = tiny_synthetic / "data"
    rows = {}
    for fraction in (0.1, 0.3, 1.0):
        dm = ShardDataModule(data, batch_size=128, train_fraction=fraction)
        stream = dm.stream("train", shuffle=True)
        rows[fraction] = set(_rows(list(stream)))
        assert stream.num_rows == len(rows[fraction])
    total = len(rows[1.0])
    assert rows[0.1] < rows[0.3] < rows[1.0]
    assert abs(len(rows[0.3]) / total - 0.3) < 0.03 and abs(len(rows[0.1]) / total - 0.1) < 0.02
    valid = ShardDataModule(data, batch_size=128, train_fraction=0.1).stream("valid")
    assert valid.num_rows == pl.read_parquet(data / "valid").height  # train_fraction never touches evaluation


def test_eval_fraction_subsamples_valid_and_test_the_same_way_for_every_train_fraction(tiny_synthetic):
    data = tiny_synthetic / "data"
    full = pl.read_parquet(data / "test").height
    picked = [set(_rows(list(ShardDataModule(data, batch_size=64, train_fraction=f, eval_fraction=0.25)
                              .stream("test")))) for f in (0.1, 1.0)]
    assert picked[0] == picked[1]  # comparable across sweep points
    assert abs(len(picked[0]) / full - 0.25) < 0.05
    train = ShardDataModule(data, batch_size=64, eval_fraction=0.25).stream("train", shuffle=True)
    assert train.num_rows == pl.read_parquet(data / "train").height


def _widths(batches) -> list[int]:
    return [int(b["hist_len"].max()) for b in batches]


def test_bucketed_batches_cover_every_row_once_with_similar_lengths(tiny_synthetic):
    data = tiny_synthetic / "data"
    files = sorted((data / "train").glob("*.parquet"))
    fmap = ShardDataModule(data).fmap
    plain = list(ShardStream(files, fmap, 32, shuffle=True, seed=3))
    bucketed = list(ShardStream(files, fmap, 32, shuffle=True, seed=3, bucket_by_length=True))
    assert _rows(bucketed) == _rows(plain)  # the same rows, each once
    assert [len(b["label"]) for b in bucketed] == [len(b["label"]) for b in plain]
    # within a batch, lengths span less than in random batches, so the padded width shrinks
    spread = [float((b["hist_len"].max() - b["hist_len"].min()).item()) for b in bucketed[:-1]]
    plain_spread = [float((b["hist_len"].max() - b["hist_len"].min()).item()) for b in plain[:-1]]
    assert np.mean(spread) < 0.5 * np.mean(plain_spread)
    assert np.mean(_widths(bucketed)) < np.mean(_widths(plain))
    # batch order is shuffled, not sorted from short to long, and seeded
    assert _widths(bucketed) != sorted(_widths(bucketed))
    again = list(ShardStream(files, fmap, 32, shuffle=True, seed=3, bucket_by_length=True))
    assert [b["target_ts"].tolist() for b in again] == [b["target_ts"].tolist() for b in bucketed]


def test_bucketing_keeps_ddp_ranks_disjoint_and_equal_and_leaves_evaluation_alone(tiny_synthetic):
    data = tiny_synthetic / "data"
    files = sorted((data / "train").glob("*.parquet"))
    fmap = ShardDataModule(data).fmap
    parts = [list(ShardStream(files, fmap, 50, shuffle=True, seed=1, rank=r, world_size=2, bucket_by_length=True))
             for r in (0, 1)]
    assert not set(_rows(parts[0])) & set(_rows(parts[1]))
    assert [len(x["label"]) for x in parts[0]] == [len(x["label"]) for x in parts[1]]
    dm = ShardDataModule(data, batch_size=50, bucket_by_length=True)
    plain = ShardDataModule(data, batch_size=50)
    assert [b["target_ts"].tolist() for b in dm.stream("valid")] == [b["target_ts"].tolist() for b in plain.stream("valid")]


def test_a_corrupt_or_empty_shard_is_a_data_error_naming_it(tiny_synthetic, tmp_path):
    import shutil

    import pytest

    from features.errors import DataError

    data = tmp_path / "data"
    shutil.copytree(tiny_synthetic / "data", data)
    shard = sorted((data / "train").glob("*.parquet"))[0]
    for content in (b"", shard.read_bytes()[:200]):
        shard.write_bytes(content)
        with pytest.raises(DataError, match=f"{shard.name}: not a readable Parquet shard"):
            list(ShardDataModule(data, batch_size=64).stream("train"))
