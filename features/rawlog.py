"""The canonical event log every source is turned into, and the checks that guard it.

A :class:`RawLog` is one polars frame of events with the columns ``user``, ``item``, ``ts`` (unix
seconds, Int64), ``row`` (0-based original order) and optional ``label``, plus named side columns
by role, and an optional user-profile table. Raw ids stay raw (strings or ints): vocabularies map
them later, fitted on the training split only.
"""

from __future__ import annotations

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


def check_timestamps(ts: pl.Series, file: str, col: str, row_offset: int = 1) -> pl.Series:
    """Timestamps as Int64 unix seconds; NaN, inf, negative or unparsable values are errors."""
    as_float = ts.cast(pl.Float64, strict=False)
    bad = as_float.is_null() | ~as_float.is_finite()
    if bad.any():
        idx = int(bad.arg_true()[0])
        raise DataError(file, idx + row_offset, col, f"timestamp {ts[idx]!r} is not a finite number")
    negative = as_float < 0
    if negative.any():
        idx = int(negative.arg_true()[0])
        raise DataError(file, idx + row_offset, col, f"timestamp {ts[idx]!r} is negative")
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
