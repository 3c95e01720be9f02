"""A generic event log that users bring: Parquet or CSV with ``user_id, item_id, timestamp``.

Optional ``label`` (0/1) and side columns named by role. Row order in the file is the tie-break of
the time order and the order of the ``file`` protocols.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from features.errors import DataError
from features.rawlog import RawLog, cast_column, check_timestamps, require_columns


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a CSV file, a Parquet file, or a folder of Parquet files (sorted by name)."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, None, "file not found")
    if path.is_dir():
        parts = sorted(path.glob("*.parquet"))
        if not parts:
            raise DataError(str(path), None, None, "folder holds no .parquet files")
        return pl.concat([pl.read_parquet(p) for p in parts], how="vertical_relaxed")
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.stat().st_size == 0:
        raise DataError(str(path), None, None, "empty file")
    return pl.read_csv(path, infer_schema=False)


def load_events(
    path: str | Path,
    item_fields: tuple[str, ...] = (),
    event_fields: tuple[str, ...] = (),
    context_fields: tuple[str, ...] = (),
    users_path: str | Path | None = None,
    user_fields: tuple[str, ...] = (),
) -> RawLog:
    """Validate and canonicalise an event log.

    Args:
        path: CSV/Parquet file or folder of Parquet files.
        item_fields: columns that describe the item (category, brand).
        event_fields: behaviour-only columns (action type).
        context_fields: impression context columns (device, page).
        users_path: optional profile table with ``user_id`` and ``user_fields``.
        user_fields: profile columns.
    """
    df = read_table(path)
    f = str(path)
    require_columns(df, ["user_id", "item_id", "timestamp", *item_fields, *event_fields, *context_fields], f)
    cols = {
        "user": cast_column(df, "user_id", pl.String, f),
        "item": cast_column(df, "item_id", pl.String, f),
        "ts": check_timestamps(df["timestamp"], f, "timestamp"),
        "row": pl.int_range(df.height, eager=True, dtype=pl.Int64),
    }
    if "label" in df.columns:
        label = cast_column(df, "label", pl.Float64, f)
        bad = ~label.is_in([0.0, 1.0])
        if bad.any():
            idx = int(bad.arg_true()[0])
            raise DataError(f, idx + 1, "label", f"label {df['label'][idx]!r} is not 0 or 1")
        cols["label"] = label.cast(pl.Int8)
    for name in (*item_fields, *event_fields, *context_fields):
        cols[name] = df[name].cast(pl.String)
    users = None
    if users_path is not None:
        udf = read_table(users_path)
        require_columns(udf, ["user_id", *user_fields], str(users_path))
        users = pl.DataFrame({"user": cast_column(udf, "user_id", pl.String, str(users_path)),
                              **{c: udf[c].cast(pl.String) for c in user_fields}})
    return RawLog(
        name=Path(path).stem, events=pl.DataFrame(cols), item_fields=tuple(item_fields),
        event_fields=tuple(event_fields), context_fields=tuple(context_fields),
        users=users, user_fields=tuple(user_fields) if users is not None else (),
    )
