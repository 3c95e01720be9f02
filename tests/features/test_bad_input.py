"""Malformed input: every error names the file, the row and the field; nothing is half-written."""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from features.errors import DataError
from features.prepare import prepare
from features.protocols import P_ML
from features.rawlog import log_from_rows
from features.sources.amazon import load_amazon
from features.sources.events import load_events
from features.sources.movielens import load_movielens


def _csv(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "row", "field", "words"),
    [
        ("user_id,item_id,timestamp\n1,2,10\n1,3,abc\n", 2, "timestamp", "not a finite number"),
        ("user_id,item_id,timestamp\n1,2,10\n1,3,NaN\n", 2, "timestamp", "not a finite number"),
        ("user_id,item_id,timestamp\n1,2,-5\n", 1, "timestamp", "negative"),
        ("user_id,item_id,timestamp\n1,2,10\n,3,11\n", 2, "user_id", "missing value"),
        ("user_id,item_id,timestamp,label\n1,2,10,1\n1,3,11,2\n", 2, "label", "not 0 or 1"),
        ("user_id,item_id,timestamp,label\n1,2,10,yes\n", 1, "label", "cannot parse"),
    ],
)
def test_bad_event_rows_name_file_row_and_field(tmp_path, body, row, field, words):
    path = _csv(tmp_path / "events.csv", body)
    with pytest.raises(DataError) as err:
        load_events(path)
    assert err.value.file == str(path) and err.value.row == row and err.value.field == field
    assert words in str(err.value) and f"row {row}" in str(err.value) and str(path) in str(err.value)


def test_missing_column_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="field 'timestamp': missing column"):
        load_events(_csv(tmp_path / "a.csv", "user_id,item_id\n1,2\n"))
    with pytest.raises(DataError, match="empty"):
        load_events(_csv(tmp_path / "b.csv", ""))
    with pytest.raises(DataError, match="empty file: no data rows"):
        load_events(_csv(tmp_path / "c.csv", "user_id,item_id,timestamp\n"))
    with pytest.raises(DataError, match="file not found"):
        load_events(tmp_path / "nope.parquet")


def test_wrong_type_in_parquet_names_the_row(tmp_path):
    path = tmp_path / "e.parquet"
    pl.DataFrame({"user_id": [1, 2], "item_id": [3, 4], "timestamp": [1.0, float("inf")]}).write_parquet(path)
    with pytest.raises(DataError, match=r"row 2, field 'timestamp'"):
        load_events(path)


def _write_ml(root, inter_rows, user_rows=None):
    root.mkdir()
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(inter_rows)
    (root / "ml-100k.inter").write_text(inter)
    users = user_rows or ["1\t24\tM\ttechnician\t85711\n"]
    (root / "ml-100k.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                                       + "".join(users))
    (root / "ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                       "5\tX\t1995\tDrama Comedy\n")


def test_movielens_bad_rating_and_age(tmp_path):
    _write_ml(tmp_path / "a", ["1\t5\t3\t100\n", "1\t5\t9\t200\n"])
    with pytest.raises(DataError, match=r"ml-100k.inter, row 2, field 'rating'"):
        load_movielens(tmp_path / "a")
    _write_ml(tmp_path / "b", ["1\t5\t3\t100\n"], ["1\told\tM\ttechnician\t85711\n"])
    with pytest.raises(DataError, match=r"ml-100k.user, row 1, field 'age'"):
        load_movielens(tmp_path / "b")


def test_amazon_misaligned_and_malformed_lines(tmp_path):
    root = tmp_path / "az"
    root.mkdir()
    (root / "Beauty_item_org_rank.txt").write_text("1 5 6\n2 7 x\n")
    (root / "Beauty_time_org_rank.txt").write_text("1 10 20\n2 10 20\n")
    with pytest.raises(DataError, match=r"Beauty_item_org_rank.txt, row 2, field 'item\[1\]'"):
        load_amazon(root)
    (root / "Beauty_item_org_rank.txt").write_text("1 5 6\n2 7 8\n")
    (root / "Beauty_time_org_rank.txt").write_bytes(gzip.compress(b"1 10 20\n3 10 20\n"))
    (root / "Beauty_time_org_rank.txt.gz").write_bytes(gzip.compress(b"1 10 20\n3 10 20\n"))
    with pytest.raises(DataError, match=r"row 2, field 'user_id'"):
        load_amazon(root)
    (root / "Beauty_time_org_rank.txt.gz").write_bytes(gzip.compress(b"1 10 20\n2 10\n"))
    with pytest.raises(DataError, match=r"row 2, field 'timestamps': 1 timestamps for 2 items"):
        load_amazon(root)


def test_failed_prepare_leaves_nothing_and_keeps_the_old_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare(log_from_rows([("u", 1, 1, 1), ("u", 2, 2, 0), ("u", 3, 3, 1)]), P_ML, out, progress=False)
    before = sorted(p.name for p in out.rglob("*"))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("features.prepare.split_stats", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(log_from_rows([("v", 1, 1, 1), ("v", 2, 2, 0)]), P_ML, out, progress=False)
    assert sorted(p.name for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind


@pytest.mark.parametrize(
    ("raw", "row", "field", "words"),
    [
        (b"user_id,item_id,timestamp\n1,2,10\n1,\xff,11\n", 2, None, "byte 0xff (line 3) is not UTF-8"),
        (b"user_id,item_id,timestamp\n1,2,10\n1,3,11,12\n", 2, None, "4 fields where the header has 3"),
        (b"user_id,item_id,timestamp\n1,2,10\n1,3\n1,4,12\n", 2, None, "2 fields where the header has 3"),
        (b'user_id,item_id,timestamp\n1,"2,10\n1,3,11\n', 1, None, "unterminated quote"),
        (b"user_id,item_id,timestamp\n1,2,1e23\n", 1, "timestamp", "after the year 2286 in seconds"),
        (b"user_id,item_id,timestamp\n1,2,10\n1,3,1700000000000\n", 2, "timestamp", "divide by 1000"),
        (b"user_id,item_id,timestamp,item_id\n1,2,10,3\n", None, "item_id", "appears twice in the header"),
    ],
    ids=["not-utf8", "extra-field", "short-row", "unterminated-quote", "1e23", "mixed-seconds-and-ms", "duplicate-column"],
)
def test_malformed_csv_is_a_clear_error(tmp_path, raw, row, field, words):
    path = tmp_path / "events.csv"
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        load_events(path)
    assert (err.value.file, err.value.row, err.value.field) == (str(path), row, field), str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize(("scale", "unit"), [(1000, "milliseconds"), (1_000_000, "microseconds")])
def test_sub_second_timestamps_are_converted_with_a_warning(tmp_path, scale, unit):
    path = tmp_path / "events.csv"
    path.write_text(f"user_id,item_id,timestamp\n1,2,{1_700_000_000 * scale}\n1,3,{1_700_000_100 * scale + 7}\n")
    with pytest.warns(UserWarning, match=f"the timestamps are unix {unit}; converted to seconds"):
        raw = load_events(path)
    assert raw.events["ts"].to_list() == [1_700_000_000, 1_700_000_100]


def test_a_corrupt_or_empty_parquet_file_names_itself(tmp_path):
    for name, content in (("empty.parquet", b""), ("corrupt.parquet", b"PAR1 not really")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match=f"{name}: not a readable Parquet file"):
            load_events(path)


def test_amazon_finds_any_category_and_asks_when_there_are_several(tmp_path):
    root = tmp_path / "az"
    root.mkdir()
    (root / "Sports_and_Outdoors_item_org_rank.txt").write_text("1 5 6\n2 7 8\n")
    (root / "Sports_and_Outdoors_time_org_rank.txt").write_text("1 10 20\n2 10 20\n")
    raw = load_amazon(root)
    assert raw.name == "amazon-sports_and_outdoors-5core" and raw.events.height == 4
    (root / "Toys_and_Games_item_org_rank.txt").write_text("1 5\n")
    with pytest.raises(DataError, match=r"categories \['Sports_and_Outdoors', 'Toys_and_Games'\]: choose one with --name"):
        load_amazon(root)
    assert load_amazon(root, "Sports_and_Outdoors").events.height == 4
    with pytest.raises(DataError, match="holds no <Category>_item_org_rank"):
        load_amazon(tmp_path)
