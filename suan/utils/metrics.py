"""Exact ranking metrics in numpy (no torch): AUC with ties, user-grouped AUC, logloss."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC (ties count one half); NaN when only one class is present.

    Args:
        labels: [S] 0/1.
        scores: [S] any real scores.
    """
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_standard_error(value: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC measured on ``n_pos`` positives and ``n_neg`` negatives (Hanley & McNeil,
    1982): how far one evaluation on this many rows may land from the model's AUC on the distribution."""
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    var = (value * (1 - value) + (n_pos - 1) * (q1 - value**2) + (n_neg - 1) * (q2 - value**2)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def gauc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Sample-count-weighted mean of per-group AUC over groups that have both classes.

    Args:
        groups: [S] group key (user).
        labels: [S] 0/1.
        scores: [S].
    """
    order = np.argsort(groups, kind="stable")
    g, y, s = np.asarray(groups)[order], np.asarray(labels)[order], np.asarray(scores)[order]
    bounds = np.flatnonzero(np.diff(g)) + 1
    total, weight = 0.0, 0
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(g)], strict=True):
        value = auc(y[lo:hi], s[lo:hi])
        if not np.isnan(value):
            total += value * (hi - lo)
            weight += hi - lo
    return total / weight if weight else float("nan")


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
