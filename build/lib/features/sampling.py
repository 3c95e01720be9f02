"""Deterministic, nested subsampling of samples (for data-size scaling sweeps).

A sample is kept when a hash of (user, impression time) falls below the fraction, so the subset at
fraction 0.1 is contained in the one at 0.2, a positive and its sampled negatives (same user and
time) stay together, and the choice does not depend on file layout or reading order.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 arithmetic wraps, as intended)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M2
    x = x ^ (x >> np.uint64(27))
    x = x * _M3
    return x ^ (x >> np.uint64(31))


def keep_mask(user_key: np.ndarray, target_ts: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """[S] bool: which samples a ``fraction`` subset keeps (all of them at 1.0).

    Args:
        user_key: [S] int user index.
        target_ts: [S] int impression time.
        fraction: in (0, 1].
        seed: selects a different nested family of subsets.
    """
    if fraction >= 1.0:
        return np.ones(len(user_key), dtype=bool)
    with np.errstate(over="ignore"):
        h = _mix(user_key.astype(np.uint64) * _M1 + np.uint64(seed))
        h = _mix(h ^ target_ts.astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction
