"""Amazon 5-core sequences as two aligned files: ``user item...`` and ``user ts...`` per line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl

from features.errors import DataError
from features.rawlog import RawLog


def _lines(path: Path) -> list[str]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    lines = raw.decode().splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(str(path), None, None, "empty file")
    return lines


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise DataError(str(root / stem), None, None, "file not found (looked for it with and without .gz)")


def _parse_ints(tokens: list[str], file: str, row: int, field: str) -> list[int]:
    out = []
    for j, tok in enumerate(tokens):
        try:
            out.append(int(tok))
        except ValueError as exc:
            raise DataError(file, row, f"{field}[{j}]", f"cannot parse {tok!r} as an integer") from exc
    return out


def categories(root: Path) -> list[str]:
    """Category prefixes of the ``<Category>_item_org_rank.txt[.gz]`` files in ``root``."""
    return sorted({p.name.split("_item_org_rank.txt")[0] for p in root.glob("*_item_org_rank.txt*")})


def load_amazon(root: str | Path, name: str = "") -> RawLog:
    """Events in file order (user lines in order, items in order within a line).

    Args:
        root: folder holding ``<name>_item_org_rank.txt[.gz]`` and ``<name>_time_org_rank.txt[.gz]``.
        name: category prefix of the file names (Beauty, Sports_and_Outdoors, Toys_and_Games, ...); "" = the
            only category in the folder. Default: "".
    """
    root = Path(root)
    if not name:
        found = categories(root)
        if len(found) != 1:
            reason = (f"holds the categories {found}: choose one with --name" if found
                      else "holds no <Category>_item_org_rank.txt[.gz] file")
            raise DataError(str(root), None, None, reason)
        name = found[0]
    item_path = _find(root, f"{name}_item_org_rank.txt")
    time_path = _find(root, f"{name}_time_org_rank.txt")
    item_lines, time_lines = _lines(item_path), _lines(time_path)
    if len(item_lines) != len(time_lines):
        raise DataError(str(time_path), None, None,
                        f"has {len(time_lines)} lines but {item_path.name} has {len(item_lines)}")
    users: list[str] = []
    items: list[int] = []
    stamps: list[int] = []
    for k, (iline, tline) in enumerate(zip(item_lines, time_lines, strict=True), start=1):
        itoks, ttoks = iline.split(), tline.split()
        if not itoks:
            raise DataError(str(item_path), k, "user_id", "empty line")
        if not ttoks or itoks[0] != ttoks[0]:
            raise DataError(str(time_path), k, "user_id",
                            f"user {ttoks[:1]} does not match {itoks[0]!r} on the same line of {item_path.name}")
        if len(itoks) != len(ttoks):
            raise DataError(str(time_path), k, "timestamps",
                            f"{len(ttoks) - 1} timestamps for {len(itoks) - 1} items")
        line_ts = _parse_ints(ttoks[1:], str(time_path), k, "timestamp")
        if any(t < 0 for t in line_ts):
            j = next(j for j, t in enumerate(line_ts) if t < 0)
            raise DataError(str(time_path), k, f"timestamp[{j}]", f"timestamp {line_ts[j]} is negative")
        items.extend(_parse_ints(itoks[1:], str(item_path), k, "item"))
        stamps.extend(line_ts)
        users.extend([itoks[0]] * (len(itoks) - 1))
    events = pl.DataFrame({
        "user": users,
        "item": pl.Series(items, dtype=pl.Int64).cast(pl.String),
        "ts": pl.Series(stamps, dtype=pl.Int64),
        "row": pl.Series(np.arange(len(items)), dtype=pl.Int64),
    })
    return RawLog(name=f"amazon-{name.lower()}-5core", events=events)
