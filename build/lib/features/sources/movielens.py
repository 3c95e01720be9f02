"""MovieLens-100K in RecBole atomic files (``ml-100k.{inter,user,item}[.gz]``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl

from features.errors import DataError
from features.rawlog import RawLog, cast_column, check_timestamps, require_columns

# ML-1M age groups, used as the profile's age bucket
AGE_EDGES = (18, 25, 35, 45, 50, 56)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise DataError(str(root / stem), None, None, "file not found (looked for it with and without .gz)")


def _read_atomic(path: Path) -> pl.DataFrame:
    """Read a RecBole atomic file as strings; ``name:type`` headers become ``name``."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if not raw.strip():
        raise DataError(str(path), None, None, "empty file")
    df = pl.read_csv(raw, separator="\t", infer_schema=False, quote_char=None)
    return df.rename({c: c.split(":")[0] for c in df.columns})


def age_bucket(age: pl.Expr) -> pl.Expr:
    """Age → ML-1M style bucket label (``<18``, ``18-24``, ... ``56+``)."""
    expr = pl.when(age < AGE_EDGES[0]).then(pl.lit(f"<{AGE_EDGES[0]}"))
    for lo, hi in zip(AGE_EDGES[:-1], AGE_EDGES[1:], strict=True):
        expr = expr.when(age < hi).then(pl.lit(f"{lo}-{hi - 1}"))
    return expr.otherwise(pl.lit(f"{AGE_EDGES[-1]}+"))


def load_movielens(root: str | Path) -> RawLog:
    """Events with rating (label = rating >= 4), first genre, and the user profile.

    Args:
        root: folder holding ``ml-100k.inter``, ``ml-100k.user`` and ``ml-100k.item`` (gzipped or not).
    """
    root = Path(root)
    inter_path, user_path, item_path = (_find(root, f"ml-100k.{k}") for k in ("inter", "user", "item"))
    inter = _read_atomic(inter_path)
    f = str(inter_path)
    require_columns(inter, ["user_id", "item_id", "rating", "timestamp"], f)
    rating = cast_column(inter, "rating", pl.Float64, f)
    bad = (rating < 0) | (rating > 5)
    if bad.any():
        idx = int(bad.arg_true()[0])
        raise DataError(f, idx + 1, "rating", f"rating {rating[idx]} is outside 0..5")
    events = pl.DataFrame({
        "user": cast_column(inter, "user_id", pl.String, f),
        "item": cast_column(inter, "item_id", pl.String, f),
        "ts": check_timestamps(inter["timestamp"], f, "timestamp"),
        "row": pl.int_range(inter.height, eager=True, dtype=pl.Int64),
        "label": (rating >= 4).cast(pl.Int8),
        "rating": rating.cast(pl.Int64).cast(pl.String),
    })
    items = _load_items(item_path)
    events = events.join(items, on="item", how="left").with_columns(pl.col("genre").fill_null("unknown"))
    return RawLog(
        name="movielens-100k", events=events, item_fields=("genre",), event_fields=("rating",),
        users=_load_users(user_path), user_fields=("age", "gender", "occupation"), items=items,
    )


def _load_items(path: Path) -> pl.DataFrame:
    items = _read_atomic(path)
    f = str(path)
    require_columns(items, ["item_id", "class"], f)
    return pl.DataFrame({
        "item": cast_column(items, "item_id", pl.String, f),
        # first genre of the space-separated class list; missing → "unknown"
        "genre": items["class"].fill_null("").str.split(" ").list.first().replace("", "unknown"),
    })


def _load_users(path: Path) -> pl.DataFrame:
    users = _read_atomic(path)
    f = str(path)
    require_columns(users, ["user_id", "age", "gender", "occupation"], f)
    age = cast_column(users, "age", pl.Int64, f)
    return pl.DataFrame({
        "user": cast_column(users, "user_id", pl.String, f),
        "age": pl.DataFrame({"a": age}).select(age_bucket(pl.col("a")).alias("a"))["a"],
        "gender": cast_column(users, "gender", pl.String, f),
        "occupation": cast_column(users, "occupation", pl.String, f),
    })
