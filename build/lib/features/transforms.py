"""Pure feature transforms shared by offline preparation and online serving.

Each function maps polars expressions or frames to new columns and holds no state beyond the
fitted vocabularies passed in, so the same code gives the same ids offline and online.
"""

from __future__ import annotations

import numpy as np
import polars as pl

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400


TIME_CONTEXT = ("hour", "weekday")


def time_context_values(ts: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """numpy twin of :func:`time_context_exprs` for the online path (parity-tested)."""
    table = {"hour": lambda t: (t // SECONDS_PER_HOUR) % 24, "weekday": lambda t: (t // SECONDS_PER_DAY + 3) % 7}
    return {n: table[n](np.asarray(ts, dtype=np.int64)) for n in names}


def time_context_exprs(ts: pl.Expr, names: tuple[str, ...]) -> list[pl.Expr]:
    """Context columns derived from the impression timestamp (unix seconds, UTC).

    ``hour`` is the hour of day, ``weekday`` 0 = Monday (1970-01-01 was a Thursday).
    """
    table = {
        "hour": ((ts // SECONDS_PER_HOUR) % 24).alias("hour"),
        "weekday": ((ts // SECONDS_PER_DAY + 3) % 7).alias("weekday"),
    }
    return [table[n] for n in names]


def time_context_names(ts: pl.Series) -> tuple[str, ...]:
    """Hour and weekday, or weekday alone when every timestamp is a whole day (Amazon)."""
    day_resolution = bool((ts % SECONDS_PER_DAY == 0).all())
    return ("weekday",) if day_resolution else ("hour", "weekday")


def dense_features(hist_len: np.ndarray, target_ts: np.ndarray, last_hist_ts: np.ndarray) -> dict[str, np.ndarray]:
    """Dense features of a sample, computed from its history only.

    Args:
        hist_len: [B] number of history behaviours.
        target_ts: [B] impression time.
        last_hist_ts: [B] time of the most recent behaviour (ignored where ``hist_len`` is 0).

    Returns:
        ``hist_len_log1p`` and ``gap_hours_log1p`` (0 without history), float32 [B] each.
    """
    gap_hours = np.where(hist_len > 0, (target_ts - last_hist_ts) / SECONDS_PER_HOUR, 0.0)
    return {
        "hist_len_log1p": np.log1p(hist_len).astype(np.float32),
        "gap_hours_log1p": np.log1p(np.maximum(gap_hours, 0.0)).astype(np.float32),
    }


DENSE_FIELDS = ("hist_len_log1p", "gap_hours_log1p")
