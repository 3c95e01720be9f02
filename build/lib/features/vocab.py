"""Vocabularies: raw values → integer ids, fitted on the training split only.

Ids: ``0`` is padding, ``1`` is out-of-vocabulary, fitted values get ``2..`` in order of descending
count (ties by value). Raw values are kept as strings so that int and string ids behave the same
offline and online. Stored as Parquet (value, id, count): never pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from features.schema import OOV_ID, PAD_ID

MISSING = "__missing__"


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
        counts = raw.drop_nulls().value_counts(name="count")
        return fit_weighted(name, counts[raw.name], counts["count"].to_numpy(), min_count)

    def encode_expr(self, expr: pl.Expr) -> pl.Expr:
        """Polars expression mapping raw values to ids (unknown → OOV, null → padding)."""
        ids = range(2, self.size)
        mapped = expr.cast(pl.String).replace_strict(self.values, ids, default=OOV_ID, return_dtype=pl.Int32)
        return pl.when(expr.is_null()).then(pl.lit(PAD_ID, pl.Int32)).otherwise(mapped)

    def encode(self, raw: pl.Series) -> pl.Series:
        """Ids for a column of raw values."""
        return pl.DataFrame({"v": raw}).select(self.encode_expr(pl.col("v")).alias("v"))["v"]

    def lookup(self) -> dict[str, int]:
        """Raw value (string) → id, for the online path; equals :meth:`encode` (parity-tested)."""
        return {v: i for i, v in enumerate(self.values, start=2)}

    def save(self, path: str | Path) -> None:
        pl.DataFrame(
            {"value": list(self.values), "id": list(range(2, self.size)), "count": list(self.counts)},
            schema={"value": pl.String, "id": pl.Int32, "count": pl.Int64},
        ).write_parquet(path)

    @classmethod
    def load(cls, name: str, path: str | Path) -> Vocab:
        df = pl.read_parquet(path).sort("id")
        return cls(name, tuple(df["value"].to_list()), tuple(df["count"].to_list()))


def fit_weighted(name: str, keys: pl.Series, weights: np.ndarray, min_count: int = 1) -> Vocab:
    """Fit from per-row counts: ``weights[i]`` occurrences of ``keys[i]`` (keys may repeat).

    Counting on integer codes and converting only the distinct values to strings keeps memory
    flat on 10^7-row logs; the result equals :meth:`Vocab.fit` on the expanded values.
    """
    df = (pl.DataFrame({"value": keys.cast(pl.String), "count": np.asarray(weights, dtype=np.int64)})
          .filter(pl.col("value").is_not_null())
          .group_by("value").agg(pl.col("count").sum())
          .filter((pl.col("count") >= min_count) & (pl.col("count") > 0))
          .sort(["count", "value"], descending=[True, False]))
    return Vocab(name, tuple(df["value"].to_list()), tuple(df["count"].to_list()))


def encode_by_uniques(values: pl.Series, vocab: Vocab) -> np.ndarray:
    """Ids of a long column, encoding each distinct value once (same ids as :meth:`Vocab.encode`)."""
    codes, uniques = _factorize(values)
    # missing raw values become OOV, exactly as the online path (online.FeatureSpace.encode) does
    return vocab.encode(uniques.cast(pl.String).fill_null(MISSING)).to_numpy()[codes]


def _factorize(values: pl.Series) -> tuple[np.ndarray, pl.Series]:
    uniques = values.unique(maintain_order=True)
    codes = pl.DataFrame({"v": values}).join(
        pl.DataFrame({"v": uniques, "c": np.arange(len(uniques))}), on="v", how="left", maintain_order="left",
        nulls_equal=True,
    )["c"].to_numpy()
    return codes, uniques
