"""Exact AUC, GAUC and logloss against brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from suan.utils.metrics import auc, gauc, logloss


def _pairwise_auc(y, s):
    pos = [b for a, b in zip(y, s, strict=True) if a == 1]
    neg = [b for a, b in zip(y, s, strict=True) if a == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=40))
def test_auc_equals_pairwise_definition_with_ties(pairs):
    y = np.array([a for a, _ in pairs])
    s = np.array([b for _, b in pairs], dtype=float)
    if y.min() == y.max():
        assert math.isnan(auc(y, s))
    else:
        assert math.isclose(auc(y, s), _pairwise_auc(y, s), rel_tol=1e-12)


def test_gauc_weights_groups_by_size_and_skips_one_class_groups():
    g = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    s = np.array([0.9, 0.1, 0.2, 0.3, 0.1, 0.9, 0.5, 0.6])
    want = (4 * _pairwise_auc(y[:4], s[:4]) + 2 * 0.0) / 6
    assert math.isclose(gauc(g, y, s), want)


def test_logloss():
    assert math.isclose(logloss(np.array([1, 0]), np.array([0.8, 0.3])), -(math.log(0.8) + math.log(0.7)) / 2)
