"""Benchmark protocols: which events are samples, their split, and sampled negatives.

``P-ML`` and ``P-AZ`` are implemented exactly as specified so that numbers are comparable with
published peers; ``time-split`` and ``leave-last-out`` are the same rules for any event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from suan.utils.config import Config, require

SPLITS = ("train", "valid", "test")
TRAIN, VALID, TEST = 0, 1, 2


@dataclass(frozen=True, kw_only=True, slots=True)
class ProtocolConfig(Config):
    """How samples, histories, splits and negatives are made from an event log.

    Args:
        name: protocol name written into the feature map.
        order: ``time`` = events ordered by (timestamp, original row), history strictly earlier in
            time; ``file`` = file order, history = earlier events in the file.
        split: ``global_time`` = samples ordered by (target timestamp, row), first ``train_frac``
            train, next ``valid_frac`` valid, rest test; ``leave_last_out`` = per user the last
            sample is test, the second-to-last valid, the rest train.
        max_seq_len: L, most recent behaviours kept. Default: 50.
        negatives: negatives sampled per positive (0 = labels come from the log). Default: 0.
        negative_seed: seed of ``numpy.random.default_rng`` for negatives. Default: 2026.
        min_count: vocabulary minimum training count. Default: 1.
        train_frac: Default: 0.8.
        valid_frac: Default: 0.1.
    """

    name: str
    order: Literal["time", "file"]
    split: Literal["global_time", "leave_last_out"]
    max_seq_len: int = 50
    negatives: int = 0
    negative_seed: int = 2026
    min_count: int = 1
    train_frac: float = 0.8
    valid_frac: float = 0.1

    def validate(self) -> None:
        require(self.order in ("time", "file"), f"order must be 'time' or 'file', got {self.order!r}")
        require(self.split in ("global_time", "leave_last_out"), f"unknown split {self.split!r}")
        require(self.max_seq_len >= 1, "max_seq_len must be >= 1")
        require(self.negatives >= 0, "negatives must be >= 0")
        require(self.min_count >= 1, "min_count must be >= 1")
        require(0 < self.train_frac and 0 <= self.valid_frac, "split fractions must be positive")
        require(self.train_frac + self.valid_frac < 1, "train_frac + valid_frac must be < 1")


P_ML = ProtocolConfig(name="P-ML", order="time", split="global_time")
P_AZ = ProtocolConfig(name="P-AZ", order="file", split="leave_last_out", negatives=1, negative_seed=2026)
PROTOCOLS = {
    "P-ML": P_ML,
    "P-AZ": P_AZ,
    "time-split": ProtocolConfig(name="time-split", order="time", split="global_time"),
    "leave-last-out": ProtocolConfig(name="leave-last-out", order="file", split="leave_last_out"),
}


def assign_splits(
    cfg: ProtocolConfig, user: np.ndarray, ts: np.ndarray, row: np.ndarray
) -> np.ndarray:
    """Split id (0 train, 1 valid, 2 test) of each sample.

    Args:
        user: [S] user index of each sample, samples in (user, order) order.
        ts: [S] target timestamps.
        row: [S] original row numbers (the tie-break of the time order).
    """
    n = len(user)
    split = np.full(n, TRAIN, dtype=np.int8)
    if cfg.split == "global_time":
        order = np.lexsort((row, ts))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        n_train = int(n * cfg.train_frac)
        n_valid = int(n * (cfg.train_frac + cfg.valid_frac))
        split[rank >= n_train] = VALID
        split[rank >= n_valid] = TEST
        return split
    last = np.ones(n, dtype=bool)
    if n > 1:
        last[:-1] = user[:-1] != user[1:]
    second_last = np.zeros(n, dtype=bool)
    if n > 1:
        second_last[:-1] = last[1:] & (user[:-1] == user[1:])
    split[second_last] = VALID
    split[last] = TEST
    return split


def sample_negatives(
    k: int, seed: int, sample_user: np.ndarray, event_user: np.ndarray, event_item: np.ndarray
) -> np.ndarray:
    """``k`` negative items per positive, uniform over the items its user never interacted with.

    Users are visited in index order (= order of first appearance in the file) and their positives
    in order; per user one ``rng.integers(0, n_untouched, size=n_positives * k)`` call picks
    positions in the sorted array of untouched items. Deterministic by ``seed``.

    Args:
        sample_user: [S] user index of each positive, non-decreasing.
        event_user: [E] user index of every event (all splits).
        event_item: [E] item code of every event (int, dense 0..I-1).

    Returns:
        [S, k] item codes.
    """
    rng = np.random.default_rng(seed)
    universe = np.unique(event_item)
    out = np.empty((len(sample_user), k), dtype=np.int64)
    ev_order = np.argsort(event_user, kind="stable")
    ev_bounds = np.searchsorted(event_user[ev_order], np.arange(event_user.max() + 2 if len(event_user) else 1))
    s_bounds = np.searchsorted(sample_user, np.arange(event_user.max() + 2 if len(event_user) else 1))
    for u in range(len(s_bounds) - 1):
        lo, hi = s_bounds[u], s_bounds[u + 1]
        if hi == lo:
            continue
        touched = np.unique(event_item[ev_order[ev_bounds[u]:ev_bounds[u + 1]]])
        untouched = np.setdiff1d(universe, touched, assume_unique=True)
        if len(untouched) == 0:
            raise ValueError(f"user index {u} interacted with every item: no negative can be drawn")
        picks = rng.integers(0, len(untouched), size=(hi - lo) * k)
        out[lo:hi] = untouched[picks].reshape(hi - lo, k)  # [S_u, k]
    return out
