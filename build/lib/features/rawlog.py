"""The canonical event log every source is turned into, and the checks that guard it.

A :class:`RawLog` is one polars frame of events with the columns ``user``, ``item``, ``ts`` (unix
seconds, Int64), ``row`` (0-based original order) and optional ``label``, plus named side columns
by role, and an optional user-profile table. Raw ids stay raw (strings or ints): vocabularies map
them later, fitted on the training split only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import polars as pl

from features.errors import DataError


@dataclass(frozen=True)
class RawLog:
    """A validated event log.

    Args:
        name: dataset name.
        events: one row per event: ``user, item, ts, row`` [+ ``label``] + side columns.
        item_fields: side columns that are a function of the item (category), for history and target.
        event_fields: behaviour-only columns (action type, rating), history only.
        context_fields: impression context columns (device), target only.
        users: optional profile table with ``user`` and ``user_fields`` columns.
        user_fields: profile columns of ``users``.
        items: optional item table (``item`` + ``item_fields``) for items absent from events.
        oracle: optional column of true click probabilities (synthetic data only; not a feature).
    """

    name: str
    events: pl.DataFrame
    item_fields: tuple[str, ...] = ()
    event_fields: tuple[str, ...] = ()
    context_fields: tuple[str, ...] = ()
    users: pl.DataFrame | None = None
    user_fields: tuple[str, ...] = ()
    items: pl.DataFrame | None = None
    oracle: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def has_label(self) -> bool:
        return "label" in self.events.columns


def require_columns(df: pl.DataFrame, columns: list[str], file: str) -> None:
    """Raise a :class:`DataError` naming the first missing column."""
    if df.height == 0:
        raise DataError(file, None, None, "empty file: no data rows")
    for col in columns:
        if col not in df.columns:
            raise DataError(file, None, col, f"missing column; the file has {df.columns}")


def cast_column(df: pl.DataFrame, col: str, dtype: pl.DataType, file: str, row_offset: int = 1) -> pl.Series:
    """Cast one column, naming the first row that does not parse or is null.

    Args:
        row_offset: number to add to the 0-based index to get the reported row (1 = data rows
            counted from 1, header excluded).
    """
    src = df[col]
    out = src.cast(dtype, strict=False)
    bad = out.is_null()
    if bad.any():
        idx = int(bad.arg_true()[0])
        value = src[idx]
        reason = "missing value" if value is None else f"cannot parse {value!r} as {dtype}"
        raise DataError(file, idx + row_offset, col, reason)
    if dtype.is_float():
        nonfinite = ~out.is_finite()
        if nonfinite.any():
            idx = int(nonfinite.arg_true()[0])
            raise DataError(file, idx + row_offset, col, f"value {src[idx]!r} is not finite")
    return out


# 2286-11-20 in unix seconds; today's milliseconds (13 digits) and microseconds (16) are far above it
MAX_SECONDS = 10_000_000_000
UNITS = (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9))


def check_timestamps(ts: pl.Series, file: str, col: str, row_offset: int = 1) -> pl.Series:
    """Timestamps as Int64 unix seconds.

    Missing, unparsable, non-finite and negative values are errors naming the row. A column that holds
    unix milliseconds, microseconds or nanoseconds throughout (every value in that unit's range) is
    converted to seconds with a warning; a value past 2286 in seconds that is not part of such a column
    is an error with the fix.
    """
    as_float = ts.cast(pl.Float64, strict=False)
    bad = as_float.is_null() | ~as_float.is_finite()
    if bad.any():
        idx = int(bad.arg_true()[0])
        reason = "missing value" if ts[idx] is None else f"timestamp {ts[idx]!r} is not a finite number"
        raise DataError(file, idx + row_offset, col, reason)
    negative = as_float < 0
    if negative.any():
        idx = int(negative.arg_true()[0])
        raise DataError(file, idx + row_offset, col, f"timestamp {ts[idx]!r} is negative")
    if float(as_float.max()) >= MAX_SECONDS:
        for unit, per_second in UNITS:
            if MAX_SECONDS * per_second / 100 <= float(as_float.min()) and float(as_float.max()) < MAX_SECONDS * per_second:
                warnings.warn(f"file {file}, field '{col}': the timestamps are unix {unit}; converted to seconds",
                              stacklevel=2)
                return (as_float / per_second).floor().cast(pl.Int64)
        idx = int((as_float >= MAX_SECONDS).arg_true()[0])
        raise DataError(file, idx + row_offset, col, f"timestamp {ts[idx]!r} is after the year 2286 in seconds: give "
                                                     "unix seconds (from milliseconds: divide by 1000)")
    return as_float.floor().cast(pl.Int64)


def log_from_rows(rows: list[tuple], name: str = "rows", label: bool = True) -> RawLog:
    """A :class:`RawLog` from ``(user, item, ts[, label])`` tuples in file order (tests, examples)."""
    data = {
        "user": [str(r[0]) for r in rows],
        "item": [str(r[1]) for r in rows],
        "ts": pl.Series([int(r[2]) for r in rows], dtype=pl.Int64),
        "row": pl.Series(range(len(rows)), dtype=pl.Int64),
    }
    if label:
        data["label"] = pl.Series([int(r[3]) if len(r) > 3 else 1 for r in rows], dtype=pl.Int8)
    return RawLog(name=name, events=pl.DataFrame(data))
