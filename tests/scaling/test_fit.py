"""Scaling-law fits recover known laws from synthetic points (seeded multiplicative noise)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from scaling.fit import (
    PowerLawFit,
    compute_optimal,
    compute_optimal_frontier,
    compute_optimal_numeric,
    fit_axis,
    fit_joint,
)

# relative tolerance on recovered exponents; noise is 0.05 % of the metric (CTR runs at fixed size
# differ by about 0.02 % in logloss across seeds, so this is on the pessimistic side).
EXPONENT_RTOL = 0.05
NOISE = 5e-4
# intervals are checked for coverage over several seeds, not for one lucky seed: a 95 % interval
# misses in about 1 of 20 datasets (measured 82-97 % over 40 seeds with 100 resamples, see the report).
SEEDS = range(8)
MIN_COVERED = 6
N_BOOT = 50
X = np.geomspace(1e5, 1e10, 11)
N_GRID = np.repeat(np.geomspace(1e5, 1e8, 5), 5)
D_GRID = np.tile(np.geomspace(1e7, 1e10, 5), 5)
TRUE_LL = {"E": 0.42, "A": 0.05 * 1e5**0.3, "alpha": 0.3}
TRUE_AUC = {"AUC_inf": 0.80, "A": 0.15 * 1e5**0.25, "alpha": 0.25}
TRUE_JOINT = {"E": 0.42, "A": 0.05 * 1e5**0.35, "alpha": 0.35, "B": 0.06 * 1e7**0.28, "beta": 0.28}


def _logloss_law(x: np.ndarray) -> np.ndarray:
    return TRUE_LL["E"] + TRUE_LL["A"] * x ** -TRUE_LL["alpha"]


def _auc_law(x: np.ndarray) -> np.ndarray:
    return TRUE_AUC["AUC_inf"] - TRUE_AUC["A"] * x ** -TRUE_AUC["alpha"]


def _joint_law(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    t = TRUE_JOINT
    return t["E"] + t["A"] * n ** -t["alpha"] + t["B"] * d ** -t["beta"]


def _noisy(y: np.ndarray, seed: int) -> np.ndarray:
    return y * np.exp(np.random.default_rng(seed).normal(0.0, NOISE, y.shape))


def _check_recovery(fits: list[PowerLawFit], name: str, true: float) -> None:
    """Every fit recovers the exponent within tolerance; intervals cover it in most seeds."""
    estimates = [f.coefficients[name] for f in fits]
    assert max(abs(e / true - 1) for e in estimates) < EXPONENT_RTOL, (name, true, estimates)
    intervals = [f.ci[name] for f in fits]
    assert all(lo <= e <= hi for e, (lo, hi) in zip(estimates, intervals, strict=True)), intervals
    covered = [lo <= true <= hi for lo, hi in intervals]
    assert sum(covered) >= MIN_COVERED, (name, true, intervals)
    assert all(f.r2 > 0.95 for f in fits)
    assert all(len(f.bootstrap_params) == N_BOOT for f in fits)


def test_axis_logloss_recovers_law():
    fits = [fit_axis(X, _noisy(_logloss_law(X), s), n_bootstrap=N_BOOT, seed=s) for s in SEEDS]
    _check_recovery(fits, "alpha", TRUE_LL["alpha"])
    assert all(f.coefficients["E"] == pytest.approx(TRUE_LL["E"], rel=0.01) for f in fits)


def test_axis_auc_recovers_law():
    # noise on the AUC itself, not on the 1 - AUC that the fit works with
    fits = [fit_axis(X, _noisy(_auc_law(X), s), metric="auc", n_bootstrap=N_BOOT, seed=s) for s in SEEDS]
    _check_recovery(fits, "alpha", TRUE_AUC["alpha"])
    assert all(f.coefficients["AUC_inf"] == pytest.approx(TRUE_AUC["AUC_inf"], abs=2e-3) for f in fits)
    assert all(f.ci["AUC_inf"][1] <= 1.0 for f in fits)


def test_joint_recovers_law():
    y = _joint_law(N_GRID, D_GRID)
    fits = [fit_joint(N_GRID, D_GRID, _noisy(y, s), n_bootstrap=N_BOOT, seed=s) for s in SEEDS]
    _check_recovery(fits, "alpha", TRUE_JOINT["alpha"])
    _check_recovery(fits, "beta", TRUE_JOINT["beta"])
    assert all(f.coefficients["E"] == pytest.approx(TRUE_JOINT["E"], rel=0.01) for f in fits)


def test_exact_data_is_recovered_to_optimiser_precision():
    fit = fit_joint(N_GRID, D_GRID, _joint_law(N_GRID, D_GRID), n_bootstrap=0)
    c = fit.coefficients
    assert c["alpha"] == pytest.approx(TRUE_JOINT["alpha"], rel=1e-5)
    assert c["beta"] == pytest.approx(TRUE_JOINT["beta"], rel=1e-5)
    assert c["log_A"] == pytest.approx(np.log(TRUE_JOINT["A"]), rel=1e-5)
    assert c["log_B"] == pytest.approx(np.log(TRUE_JOINT["B"]), rel=1e-5)


def test_huber_resists_an_outlier():
    y = _noisy(_logloss_law(X), seed=0)
    # one diverged run 5 % above the law
    y[6] *= 1.05
    robust = fit_axis(X, y, n_bootstrap=0)
    plain = fit_axis(X, y, n_bootstrap=0, huber_delta=None)
    robust_err = abs(robust.coefficients["alpha"] / TRUE_LL["alpha"] - 1)
    plain_err = abs(plain.coefficients["alpha"] / TRUE_LL["alpha"] - 1)
    assert robust_err < EXPONENT_RTOL
    assert plain_err > 2 * robust_err


def test_huber_resists_an_outlier_joint():
    y = _noisy(_joint_law(N_GRID, D_GRID), seed=0)
    y[12] *= 1.05
    fit = fit_joint(N_GRID, D_GRID, y, n_bootstrap=0)
    assert fit.coefficients["alpha"] == pytest.approx(TRUE_JOINT["alpha"], rel=EXPONENT_RTOL)
    assert fit.coefficients["beta"] == pytest.approx(TRUE_JOINT["beta"], rel=EXPONENT_RTOL)


def test_extrapolation_small_on_exact_law_and_large_when_it_bends():
    exact = fit_axis(X, _logloss_law(X), n_bootstrap=0)
    # the law holds up to the second-largest x, then the metric saturates
    bent = fit_axis(X, _logloss_law(np.minimum(X, X[-2])), n_bootstrap=0)
    (e_exact,), (e_bent,) = exact.extrapolation, bent.extrapolation
    assert e_exact.axis == "x" and e_exact.held_out_value == pytest.approx(X[-1])
    assert max(e_exact.rel_error) < 1e-5
    assert max(e_bent.rel_error) > 1e-3
    assert max(e_bent.rel_error) > 100 * max(e_exact.rel_error)
    # the bent data are still fitted well in-sample: only the held-out check exposes the bend
    assert bent.r2 > 0.99


def test_joint_extrapolation_holds_out_each_axis():
    y = _joint_law(N_GRID, D_GRID)
    checks = fit_joint(N_GRID, D_GRID, y, n_bootstrap=0).extrapolation
    assert [c.axis for c in checks] == ["N", "D"]
    assert [len(c.observed) for c in checks] == [5, 5]
    assert max(max(c.rel_error) for c in checks) < 1e-5
    # data that stop improving beyond the second-largest D
    bent = _joint_law(N_GRID, np.minimum(D_GRID, np.unique(D_GRID)[-2]))
    n_check, d_check = fit_joint(N_GRID, D_GRID, bent, n_bootstrap=0).extrapolation
    # the bend also biases the N refit (it still sees the flat D points), but the D check is the loud one
    assert max(d_check.rel_error) > 1e-2
    assert max(d_check.rel_error) > 100 * max(max(c.rel_error) for c in checks)
    assert max(d_check.rel_error) > max(n_check.rel_error)


@pytest.mark.parametrize("k", [6.0, 2.0])
def test_compute_optimal_matches_brute_force(k):
    fit = fit_joint(N_GRID, D_GRID, _joint_law(N_GRID, D_GRID), n_bootstrap=0)
    for flops in (1e15, 1e18, 1e21):
        closed = compute_optimal(fit, flops, flops_per_param_sample=k)
        numeric = compute_optimal_numeric(fit, flops, flops_per_param_sample=k)
        # brute force along the budget line, about 5e-5 decades between grid points
        n = np.geomspace(1.0, flops / k, 400_001)
        loss = fit.predict(n, flops / (k * n))
        best = n[np.argmin(loss)]
        assert closed.n_opt == pytest.approx(best, rel=5e-4)
        assert numeric.n_opt == pytest.approx(closed.n_opt, rel=1e-5)
        assert closed.metric_opt == pytest.approx(loss.min(), rel=1e-9)
        assert closed.n_opt * closed.d_opt * k == pytest.approx(flops)
    a, b = fit.coefficients["alpha"], fit.coefficients["beta"]
    n_opt, d_opt = compute_optimal_frontier(fit, [1e18, 1e19], flops_per_param_sample=k)
    assert n_opt[1] / n_opt[0] == pytest.approx(10 ** (b / (a + b)))
    assert d_opt[1] / d_opt[0] == pytest.approx(10 ** (a / (a + b)))


def test_to_dict_is_plain_json_with_consistent_intervals():
    fit = fit_joint(N_GRID, D_GRID, _noisy(_joint_law(N_GRID, D_GRID), 0), n_bootstrap=30)
    d = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert d["form"] == "L(N, D) = E + A / N**alpha + B / D**beta"
    assert set(d["coefficients"]) == set(d["ci"]) == {"E", "log_A", "alpha", "log_B", "beta"}
    for name, (lo, hi) in d["ci"].items():
        assert lo <= d["coefficients"][name] <= hi, name
    assert d["n_points"] == 25 and d["n_bootstrap"] == 30
    assert [e["axis"] for e in d["extrapolation"]] == ["N", "D"]
    opt = json.loads(json.dumps(compute_optimal(fit, 1e18).to_dict()))
    assert opt["flops"] == 1e18 and opt["n_exponent"] + opt["d_exponent"] == pytest.approx(1.0)


def test_bootstrap_is_seeded_and_optional():
    y = _noisy(_logloss_law(X), 3)
    a, b = (fit_axis(X, y, n_bootstrap=20, seed=7) for _ in range(2))
    assert a.ci == b.ci
    none = fit_axis(X, y, n_bootstrap=0)
    assert all(np.isnan(v).all() for v in none.ci.values())
    assert json.loads(json.dumps(none.to_dict(), allow_nan=False))["ci"]["alpha"] == [None, None]
    lo, hi = none.prediction_band(X)
    np.testing.assert_array_equal(lo, none.predict(X))
    lo, hi = a.prediction_band(X)
    assert (lo <= a.predict(X) + 1e-12).all() and (hi >= a.predict(X) - 1e-12).all()


def test_results_are_frozen():
    fit = fit_axis(X, _logloss_law(X), n_bootstrap=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.r2 = 1.0
    with pytest.raises(ValueError, match="read-only"):
        fit.params[0] = 0.0


@pytest.mark.parametrize(
    ("x", "y", "metric", "match"),
    [
        (-X, _logloss_law(X), "logloss", "finite and > 0"),
        (X[:5], _logloss_law(X), "logloss", "measurements"),
        (X, -_logloss_law(X), "logloss", "must be > 0"),
        (X, _auc_law(X) + 0.5, "auc", r"in \(0, 1\)"),
        (np.array([1e5, 1e5, 1e6, 1e6]), np.array([0.5, 0.5, 0.45, 0.45]), "logloss", "distinct"),
        (X, _logloss_law(X), "mse", "metric"),
    ],
    ids=["negative-x", "length-mismatch", "negative-logloss", "auc-above-1", "two-distinct-x", "bad-metric"],
)
def test_bad_input_raises(x, y, metric, match):
    with pytest.raises(ValueError, match=match):
        fit_axis(x, y, metric=metric, n_bootstrap=0)


def test_compute_optimal_rejects_bad_requests():
    axis_fit = fit_axis(X, _logloss_law(X), n_bootstrap=0)
    with pytest.raises(ValueError, match="joint"):
        compute_optimal(axis_fit, 1e18)
    joint = fit_joint(N_GRID, D_GRID, _joint_law(N_GRID, D_GRID), n_bootstrap=0)
    with pytest.raises(ValueError, match="flops"):
        compute_optimal(joint, 1.0)


def test_find_bend_names_the_best_point_and_those_past_it():
    from scaling.fit import find_bend

    x = [4.0, 1.0, 2.0, 3.0]  # any order
    assert find_bend(x, [0.40, 0.50, 0.45, 0.42], metric="logloss") is None
    assert find_bend(x, [0.44, 0.50, 0.45, 0.42], metric="logloss") == {"best_x": 3.0, "best": 0.42,
                                                                       "after": [[4.0, 0.44]]}
    assert find_bend(x, [0.66, 0.60, 0.70, 0.68], metric="auc")["best_x"] == 2.0


def test_an_exponent_at_its_search_bound_is_flagged():
    x = np.logspace(3, 6, 6)
    flat = fit_axis(x, 0.45 + 0 * x + np.linspace(0, 1e-4, 6)[::-1], metric="logloss", n_bootstrap=0)
    clean = fit_axis(x, 0.4 + 3.0 / x**0.3, metric="logloss", n_bootstrap=0)
    assert clean.at_bound == [] and flat.to_dict()["at_bound"] == flat.at_bound
    assert flat.at_bound == ["alpha"]


def test_a_floor_the_points_do_not_show_is_flagged():
    x = np.logspace(3, 6, 6)
    assert fit_axis(x, 2.0 * x**-0.2, metric="logloss", n_bootstrap=0).floor_at_zero
    assert not fit_axis(x, 0.4 + 3.0 / x**0.3, metric="logloss", n_bootstrap=0).floor_at_zero


@pytest.mark.parametrize(("ends", "flagged"), [((0.01, 2.0), True), ((0.1, 0.9), False)])
def test_an_exponent_with_an_interval_over_two_orders_wide_is_not_identified(ends, flagged):
    fit = fit_axis(np.logspace(3, 6, 6), 0.4 + 3.0 / np.logspace(3, 6, 6) ** 0.3, metric="logloss", n_bootstrap=0)
    resamples = np.tile(fit.params, (40, 1))  # [R=40, P]: alpha is the last parameter
    resamples[:20, -1], resamples[20:, -1] = ends  # the 95 % interval is then exactly these ends
    wide = dataclasses.replace(fit, bootstrap_params=resamples)
    assert fit.at_bound == [] and wide.at_bound == (["alpha"] if flagged else [])


def test_compute_optimal_interval_brackets_the_point_and_narrows_with_cleaner_data():
    from scaling.fit import compute_optimal_ci

    rng = np.random.default_rng(0)
    n = np.repeat(1e4 * 4.0 ** np.arange(5), 5)
    d = np.tile(1e6 * 2.0 ** np.arange(5), 5)
    widths = []
    for noise in (0.01, 0.002):
        y = (0.40 + 3.0 / n**0.3 + 20.0 / d**0.35) * np.exp(noise * rng.standard_normal(len(n)))
        fit = fit_joint(n, d, y, metric="logloss", axes=("params_encoder", "train_samples"), n_bootstrap=60)
        budget = 6.0 * 1e5 * 4e6
        point, ci = compute_optimal(fit, budget), compute_optimal_ci(fit, budget)
        assert ci["n_opt"][0] <= point.n_opt <= ci["n_opt"][1] and ci["d_opt"][0] <= point.d_opt <= ci["d_opt"][1]
        widths.append(np.log(ci["n_opt"][1] / ci["n_opt"][0]))
    assert widths[1] < widths[0]  # five times less noise, a narrower interval


def test_a_known_floor_keeps_the_law_above_the_bayes_limit():
    """Points of a pure power law over the data's Bayes limit (the floor is reached only at infinite size),
    few and noisy: with the floor known the law never runs below it, at any size, nor in any resample."""
    x = np.geomspace(3e3, 2e5, 5)
    rng = np.random.default_rng(3)
    floor = 0.40
    y = (floor + 0.9 * x**-0.2) * np.exp(rng.normal(0, 2e-3, x.size))
    fit = fit_axis(x, y, n_bootstrap=40, floor=floor)
    assert fit.coefficients["E"] >= floor and fit.ci["E"][0] >= floor
    far = fit.predict(np.geomspace(1e6, 1e15, 10))
    assert (far >= floor).all()
    lo, _ = fit.prediction_band(np.geomspace(1e6, 1e15, 10))
    assert (lo >= floor).all()
    assert fit.to_dict()["known_floor"] == floor
    assert fit.coefficients["alpha"] == pytest.approx(0.2, rel=0.35)  # the exponent of the excess above it
    auc = fit_axis(x, 0.86 - (y - floor), metric="auc", n_bootstrap=0, floor=1 - 0.86)  # AUC mirrors logloss
    assert auc.coefficients["AUC_inf"] <= 0.86 + 1e-12


def test_a_point_below_the_known_floor_is_refused_naming_it():
    x = np.geomspace(1e4, 1e6, 5)
    with pytest.raises(ValueError, match="above the known floor 0.5"):
        fit_axis(x, 0.45 + 0.1 * x**-0.3, floor=0.5)
    with pytest.raises(ValueError, match="floor must be finite and >= 0"):
        fit_axis(x, 0.45 + 0.1 * x**-0.3, floor=-0.1)
