"""Exact AUC, GAUC and logloss against brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
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


def test_the_auc_standard_error_matches_the_spread_of_auc_over_resampled_test_sets():
    from suan.utils.metrics import auc_standard_error

    rng = np.random.default_rng(0)
    n_pos, n_neg, shift = 150, 250, 1.0  # positives score N(1, 1), negatives N(0, 1): AUC = Phi(1/sqrt 2) = 0.760
    draws = [auc(np.r_[np.ones(n_pos), np.zeros(n_neg)], np.r_[rng.normal(shift, 1, n_pos), rng.normal(0, 1, n_neg)])
             for _ in range(2000)]
    se = auc_standard_error(float(np.mean(draws)), n_pos, n_neg)
    assert np.std(draws) == pytest.approx(se, rel=0.1)  # Hanley-McNeil is an approximation: within 10 %
    assert auc_standard_error(0.76, 4 * n_pos, 4 * n_neg) == pytest.approx(se / 2, rel=0.05)  # ~ 1 / sqrt(rows)
