"""Vocabularies: raw values → integer ids, fitted on the training split only.

Ids: ``0`` is padding, ``1`` is out-of-vocabulary, fitted values get ``2..`` in order of descending
count (ties by value). Raw values are kept as strings so that int and string ids behave the same
offline and online. Stored as Parquet (value, id, count): never pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from features.schema import OOV_ID, PAD_ID


@dataclass(frozen=True)
class Vocab:
    """A fitted vocabulary.

    Args:
        name: vocabulary name (shared by the fields that use it).
        values: raw values (as strings) in id order, starting at id 2.
        counts: training counts of ``values``.
    """

    name: str
    values: tuple[str, ...]
    counts: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of ids including padding and OOV."""
        return len(self.values) + 2

    @classmethod
    def fit(cls, name: str, raw: pl.Series, min_count: int = 1) -> Vocab:
        """Fit on one column of training values (nulls ignored); values seen < ``min_count`` → OOV."""
        counts = (
            raw.drop_nulls().cast(pl.String).value_counts(name="count")
            .filter(pl.col("count") >= min_count)
            .sort(["count", raw.name], descending=[True, False])
        )
        return cls(name, tuple(counts[raw.name].to_list()), tuple(counts["count"].to_list()))

    def encode_expr(self, expr: pl.Expr) -> pl.Expr:
        """Polars expression mapping raw values to ids (unknown → OOV, null → padding)."""
        ids = range(2, self.size)
        mapped = expr.cast(pl.String).replace_strict(self.values, ids, default=OOV_ID, return_dtype=pl.Int32)
        return pl.when(expr.is_null()).then(pl.lit(PAD_ID, pl.Int32)).otherwise(mapped)

    def encode(self, raw: pl.Series) -> pl.Series:
        """Ids for a column of raw values."""
        return pl.DataFrame({"v": raw}).select(self.encode_expr(pl.col("v")))["v"]

    def save(self, path: str | Path) -> None:
        pl.DataFrame(
            {"value": list(self.values), "id": list(range(2, self.size)), "count": list(self.counts)},
            schema={"value": pl.String, "id": pl.Int32, "count": pl.Int64},
        ).write_parquet(path)

    @classmethod
    def load(cls, name: str, path: str | Path) -> Vocab:
        df = pl.read_parquet(path).sort("id")
        return cls(name, tuple(df["value"].to_list()), tuple(df["count"].to_list()))
