"""A generic event log that users bring: Parquet or CSV with ``user_id, item_id, timestamp``.

Optional ``label`` (0/1) and side columns named by role. Row order in the file is the tie-break of
the time order and the order of the ``file`` protocols.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl

from features.errors import DataError
from features.rawlog import RawLog, cast_column, check_timestamps, require_columns


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a CSV file, a Parquet file, or a folder of Parquet files (sorted by name).

    Every failure is a :class:`DataError` naming the file (and the row and field where it can be found):
    bytes that are not UTF-8, rows with more or fewer fields than the header, an unterminated quote, a
    column named twice, an unreadable Parquet file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, None, "file not found")
    if path.is_dir():
        parts = sorted(path.glob("*.parquet"))
        if not parts:
            raise DataError(str(path), None, None, "folder holds no .parquet files")
        return pl.concat([read_parquet(p) for p in parts], how="vertical_relaxed")
    if path.suffix == ".parquet":
        return read_parquet(path)
    return read_csv(path)


def read_parquet(path: Path) -> pl.DataFrame:
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(str(path), None, None, f"not a readable Parquet file ({first_line(exc)})") from exc
    _check_unique_columns(df.columns, str(path))
    return df


def read_csv(path: Path) -> pl.DataFrame:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(str(path), None, None, "empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1  # physical line; the header is line 1
        raise DataError(str(path), line - 1 if line > 1 else None, None,
                        f"byte 0x{raw[exc.start]:02x} (line {line}) is not UTF-8: re-encode the file as UTF-8") from None
    header = next(csv.reader(io.StringIO(text)), [])
    _check_unique_columns(header, str(path))
    try:
        df = pl.read_csv(raw, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise csv_structure_error(path, text) or DataError(str(path), None, None,
                                                           f"cannot parse as CSV ({first_line(exc)})") from exc
    return df


def csv_structure_error(path: Path, text: str) -> DataError | None:
    """The first row whose field count differs from the header's, or an unterminated quote; None if neither."""
    reader = csv.reader(io.StringIO(text), strict=True)
    row, line = 0, 1
    try:
        header = next(reader)
        while True:
            line = reader.line_num + 1  # where the next record starts
            record = next(reader, None)
            if record is None:
                return None
            row += 1
            if record and len(record) != len(header):
                return DataError(str(path), row, None, f"{len(record)} fields where the header has {len(header)} "
                                                       f"({', '.join(header)})")
    except csv.Error as exc:
        return DataError(str(path), row + 1, None, f"malformed CSV from line {line} on ({exc}): an unterminated quote?")


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_unique_columns(columns: list[str], file: str) -> None:
    seen = set()
    for name in columns:
        if name in seen:
            raise DataError(file, None, name, "the column appears twice in the header: rename or drop one")
        seen.add(name)


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
    if Path(path).is_file() and Path(path).suffix != ".parquet" and df.select(pl.all().is_null().any()).row(0).count(True):
        # polars pads a short row with nulls: say so rather than "missing value" further down
        if (short := csv_structure_error(Path(path), Path(path).read_text())) is not None:
            raise short
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
