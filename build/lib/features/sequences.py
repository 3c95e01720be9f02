"""History windows: which earlier behaviours each sample sees, as index arithmetic on sorted events.

Events are sorted by user, then by the protocol's order. For the sample at event ``i`` the history is
the half-open range ``[hist_start[i], hist_end[i])`` of that user's earlier events, at most L long
(the most recent ones). Everything here is vectorised numpy so that 10^7 events take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windows:
    """History windows over events sorted by (user, order).

    Args:
        user_start: [E] index of the first event of the event's user.
        hist_start: [E] first history index (inclusive).
        hist_end: [E] history end (exclusive).
        is_sample: [E] whether the event has a non-empty history and so is a sample.
    """

    user_start: np.ndarray
    hist_start: np.ndarray
    hist_end: np.ndarray
    is_sample: np.ndarray


def group_starts(keys: np.ndarray) -> np.ndarray:
    """For sorted ``keys`` [E], the index where each element's run of equal keys begins."""
    n = len(keys)
    new_run = np.ones(n, dtype=bool)
    if n > 1:
        new_run[1:] = keys[1:] != keys[:-1]
    return np.maximum.accumulate(np.where(new_run, np.arange(n), 0))


def history_windows(user: np.ndarray, ts: np.ndarray, max_len: int, strict_time: bool) -> Windows:
    """History windows for events already sorted by (user, order).

    Args:
        user: [E] user index, non-decreasing.
        ts: [E] timestamps; within a user non-decreasing when ``strict_time``.
        max_len: L, the most behaviours kept (the most recent).
        strict_time: if True, a history holds only events with a strictly smaller timestamp (P-ML);
            else every earlier event in the order (P-AZ file order).

    Returns:
        The :class:`Windows` of every event.
    """
    n = len(user)
    user_start = group_starts(user)
    if strict_time:
        # a run of equal (user, ts) starts where user or ts changes; it sees only events before the run
        change = np.ones(n, dtype=bool)
        if n > 1:
            change[1:] = (user[1:] != user[:-1]) | (ts[1:] != ts[:-1])
        hist_end = np.maximum.accumulate(np.where(change, np.arange(n), 0))
    else:
        hist_end = np.arange(n)
    hist_start = np.maximum(user_start, hist_end - max_len)
    return Windows(user_start, hist_start, hist_end, hist_end > user_start)


def gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``arange(s, s + n)`` for every (s, n) pair.

    Returns:
        ``(index [sum(n)], offsets [len(n) + 1])`` with int32 offsets for Arrow list arrays.
    """
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    # position within its range = global position - start of its range in the output
    within = np.arange(total, dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    return np.repeat(starts.astype(np.int64), lengths) + within, offsets.astype(np.int32)
