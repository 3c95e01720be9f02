"""Scaling-law fits in pure numpy/scipy: per-axis power laws, the joint L(N, D) law, bootstrap CIs.

Forms (x is non-embedding parameters, FLOPs per sample or training samples):

    logloss, per axis    L(x)      = E + A * x**(-alpha)
    AUC, per axis        AUC(x)    = AUC_inf - A * x**(-alpha)
    logloss, joint       L(N, D)   = E + A / N**alpha + B / D**beta
    AUC, joint           AUC(N, D) = AUC_inf - A / N**alpha - B / D**beta

How the fit is done, and why:

- AUC is fitted as its distance to perfect ranking, ``err = 1 - AUC = E + A * x**(-alpha)`` with
  ``E = 1 - AUC_inf >= 0``: the same form as logloss, and ``AUC_inf <= 1`` holds by construction.
- The residual is ``log(predicted) - log(observed)`` of that positive quantity, with the prediction
  computed as ``logsumexp(log E, log A - alpha * log x, ...)`` (Hoffmann et al. 2022). Unlike the log
  of the excess over E it stays defined when a noisy point falls below the fitted floor, and it is
  scale-free: one Huber delta serves every metric (a residual of 1e-3 is a 0.1 % relative error).
- Huber loss via ``scipy.optimize.least_squares(loss="huber", f_scale=huber_delta)``: residuals beyond
  delta count linearly, so one diverged run does not drag the exponents.
- x spans orders of magnitude, so the optimiser sees ``log(x / geometric_mean(x))`` and the amplitude as
  ``log A``; coefficients are reported in raw units (``log_A`` is the natural log of A for raw x).
- Multi-start: for every exponent on a grid (every pair for the joint law) the model is linear in
  ``E, A, B``, so a non-negative linear least squares gives the floor and amplitudes; least_squares runs
  from the few starts with the lowest Huber cost and the lowest final cost wins.
- Extrapolation check: refit without the points at the largest value of each axis (largest x, or
  largest N and separately largest D) and compare the refit's prediction with the held-out points.
- A known floor: where the data's Bayes limit is known (a synthetic world's oracle), ``floor`` is the
  least logloss (or 1 - AUC) any model can reach, and the law is fitted as ``floor + E' + A * x**(-alpha)``
  with ``E' >= 0``: a law that runs below what the data allows cannot come out of it.
- Bootstrap: points resampled with replacement (seeded ``numpy.random.Generator``), each resample refitted
  from the full-data optimum, percentile interval per coefficient. Resamples that cannot identify the
  law (fewer than 3 distinct values on an axis, or fewer distinct points than parameters) are redrawn,
  up to ``10 * n_bootstrap`` draws; the result records how many resamples succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar

from scaling._powerlaw import (
    DEFAULT_EXPONENT_GRID,
    EXPONENT_BOUNDS,
    bootstrap,
    identifiable,
    log_predict,
    solve,
)

Metric = Literal["logloss", "auc"]
# a floor below this (logloss, or 1 - AUC) is "not identified": metrics here are O(0.1)
FLOOR_EPS = 1e-6
# an exponent whose 95 % interval spans more than two orders of magnitude is not identified
MAX_CI_RATIO = 100.0

_FORMS = {
    ("logloss", 1): "L(x) = E + A * x**(-alpha)",
    ("auc", 1): "AUC(x) = AUC_inf - A * x**(-alpha)",
    ("logloss", 2): "L(N, D) = E + A / N**alpha + B / D**beta",
    ("auc", 2): "AUC(N, D) = AUC_inf - A / N**alpha - B / D**beta",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ExtrapolationCheck:
    """Refit without the largest value of one axis, then predict the held-out points.

    Args:
        axis: name of the axis whose largest value was held out.
        held_out_value: that largest value.
        predicted: [H] prediction of the refit at the held-out points (metric scale).
        observed: [H] measured metric at the held-out points.
    """

    axis: str
    held_out_value: float
    predicted: tuple[float, ...]
    observed: tuple[float, ...]

    @property
    def abs_error(self) -> tuple[float, ...]:
        """[H] |predicted - observed|."""
        return tuple(abs(p - o) for p, o in zip(self.predicted, self.observed, strict=True))

    @property
    def rel_error(self) -> tuple[float, ...]:
        """[H] |predicted - observed| / |observed|."""
        return tuple(e / abs(o) for e, o in zip(self.abs_error, self.observed, strict=True))

    def to_dict(self) -> dict:
        """Plain JSON types, with the max absolute and relative error as summaries."""
        return {
            "axis": self.axis,
            "held_out_value": self.held_out_value,
            "predicted": list(self.predicted),
            "observed": list(self.observed),
            "abs_error": list(self.abs_error),
            "rel_error": list(self.rel_error),
            "max_abs_error": max(self.abs_error),
            "max_rel_error": max(self.rel_error),
        }


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class PowerLawFit:
    """A fitted per-axis (one axis) or joint (two axes) scaling law.

    Args:
        metric: "logloss" or "auc".
        axes: axis names, ("x",) per axis or ("N", "D") joint.
        params: [P] internal parameters in raw units: log E, then (log A, alpha) per axis, where E is
            the floor of logloss or of 1 - AUC.
        bootstrap_params: [R, P] the same for every successful bootstrap resample (R may be 0).
        ci_level: central probability of the intervals, e.g. 0.95.
        r2: coefficient of determination on the metric's own scale.
        n_points: number of points fitted.
        huber_delta: Huber threshold on log residuals; None for plain least squares.
        extrapolation: one check per axis that had enough distinct values to hold its largest out.
        floor: the known least logloss (or 1 - AUC) of the data, below which E is never fitted; 0 = unknown.
    """

    metric: Metric
    axes: tuple[str, ...]
    params: np.ndarray
    bootstrap_params: np.ndarray
    ci_level: float
    r2: float
    n_points: int
    huber_delta: float | None
    extrapolation: tuple[ExtrapolationCheck, ...]
    floor: float = 0.0

    @property
    def form(self) -> str:
        """The law as a formula."""
        return _FORMS[(self.metric, len(self.axes))]

    @property
    def coefficients(self) -> dict[str, float]:
        """Named coefficients: E or AUC_inf, log_A, alpha and, joint, log_B, beta."""
        return _named(self.metric, self.params, self.floor)

    @property
    def ci(self) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval per coefficient; NaN when there was no bootstrap."""
        if len(self.bootstrap_params) == 0:
            return {name: (float("nan"), float("nan")) for name in self.coefficients}
        q = 50.0 * (1.0 - self.ci_level)
        lo, hi = np.percentile(self.bootstrap_params, [q, 100.0 - q], axis=0)
        lo_named, hi_named = _named(self.metric, lo, self.floor), _named(self.metric, hi, self.floor)
        # AUC_inf = 1 - E flips the interval ends
        return {k: (min(lo_named[k], hi_named[k]), max(lo_named[k], hi_named[k])) for k in lo_named}

    def predict(self, *xs: ArrayLike) -> np.ndarray:
        """Metric predicted by the law.

        Args:
            *xs: one array per axis (x, or N and D), broadcastable, all > 0.

        Returns:
            The predicted logloss or AUC, broadcast shape of xs.
        """
        return _predict(self.metric, self.params, xs, self.floor)

    def prediction_band(self, *xs: ArrayLike, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap predictions.

        Args:
            *xs: one array per axis, broadcastable.
            level: central probability. Default: ``ci_level``.

        Returns:
            (low, high), each of the broadcast shape of xs; the point prediction twice without bootstrap.
        """
        if len(self.bootstrap_params) == 0:
            pred = self.predict(*xs)
            return pred, pred
        q = 50.0 * (1.0 - (self.ci_level if level is None else level))
        preds = np.stack([_predict(self.metric, p, xs, self.floor) for p in self.bootstrap_params])
        lo, hi = np.percentile(preds, [q, 100.0 - q], axis=0)
        return lo, hi

    def __post_init__(self) -> None:
        """Freeze the arrays too, not only the attributes."""
        self.params.setflags(write=False)
        self.bootstrap_params.setflags(write=False)

    def to_dict(self) -> dict:
        """Plain JSON types (NaN becomes None): form, coefficients, CI per coefficient, R², counts, checks."""
        return {
            "metric": self.metric,
            "form": self.form,
            "axes": list(self.axes),
            "coefficients": self.coefficients,
            "ci": {k: [_json_float(lo), _json_float(hi)] for k, (lo, hi) in self.ci.items()},
            "ci_level": self.ci_level,
            "r2": _json_float(self.r2),
            "n_points": self.n_points,
            "n_bootstrap": len(self.bootstrap_params),
            "huber_delta": self.huber_delta,
            "extrapolation": [c.to_dict() for c in self.extrapolation],
            "at_bound": self.at_bound,
            "floor_at_zero": self.floor_at_zero,
            "known_floor": self.floor,
        }

    @property
    def floor_at_zero(self) -> bool:
        """The fitted floor (E, or 1 - AUC_inf) went to ~0, or to the known ``floor``: the points show no
        saturation above it, so the law says nothing about where the metric levels off in between."""
        return bool(np.exp(self.params[0]) < FLOOR_EPS)

    @property
    def at_bound(self) -> list[str]:
        """Exponents the points do not identify: stuck at a bound of the search (``EXPONENT_BOUNDS``; at
        the upper bound the term has vanished into the floor, at the lower into A), or with a bootstrap
        interval wider than ``MAX_CI_RATIO`` (hi / lo): exponents that far apart fit the points alike."""
        lo, hi = EXPONENT_BOUNDS
        ci = self.ci

        def unidentified(name: str) -> bool:
            value, (ci_lo, ci_hi) = self.coefficients[name], ci[name]
            return not lo * 1.01 < value < hi * 0.99 or ci_hi > MAX_CI_RATIO * ci_lo

        return [k for k in ("alpha", "beta") if k in self.coefficients and unidentified(k)]


@dataclass(frozen=True, kw_only=True, slots=True)
class ComputeOptimal:
    """Compute-optimal allocation of a FLOP budget C = k * N * D under a joint law.

    Args:
        flops: the budget C.
        flops_per_param_sample: k (6 for a training step: forward 2, backward 4).
        n_opt: optimal N (parameters).
        d_opt: optimal D (samples).
        metric_opt: predicted logloss or AUC at (n_opt, d_opt).
        n_exponent: N_opt ∝ C**n_exponent, beta / (alpha + beta).
        d_exponent: D_opt ∝ C**d_exponent, alpha / (alpha + beta).
    """

    flops: float
    flops_per_param_sample: float
    n_opt: float
    d_opt: float
    metric_opt: float
    n_exponent: float
    d_exponent: float

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


def find_bend(x: ArrayLike, y: ArrayLike, *, metric: Metric) -> dict | None:
    """Where a metric stops improving along an axis; None when its best value is at the largest x.

    A power law in x only describes the points up to the best one: past it the metric saturates or gets
    worse (overfitting, too little data for the size, too few steps for the size), and fitting through
    those points would bend the exponent instead of saying so.

    Args:
        x: [S] axis values (one per point; seeds already averaged).
        y: [S] logloss (lower is better) or AUC (higher is better).
        metric: "logloss" or "auc".

    Returns:
        ``{"best_x", "best", "after": [[x, y], ...]}`` with the points past the best, or None.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    best = int(np.argmin(y) if metric == "logloss" else np.argmax(y))
    if best == len(x) - 1:
        return None
    return {"best_x": float(x[best]), "best": float(y[best]),
            "after": [[float(a), float(b)] for a, b in zip(x[best + 1:], y[best + 1:], strict=True)]}


def fit_axis(
    x: ArrayLike,
    y: ArrayLike,
    *,
    metric: Metric = "logloss",
    axis: str = "x",
    n_bootstrap: int = 200,
    ci_level: float = 0.95,
    huber_delta: float | None = 1e-3,
    exponent_grid: Sequence[float] = DEFAULT_EXPONENT_GRID,
    seed: int | np.random.Generator = 0,
    floor: float = 0.0,
) -> PowerLawFit:
    """Fit ``E + A * x**(-alpha)`` (logloss) or ``AUC_inf - A * x**(-alpha)`` (AUC) along one axis.

    Args:
        x: [S] axis values > 0 (non-embedding params, FLOPs per sample or training samples).
        y: [S] measured logloss (> 0) or AUC (in (0, 1)).
        metric: "logloss" or "auc". Default: "logloss".
        axis: name of the axis, used in reports and plots. Default: "x".
        n_bootstrap: resamples for the intervals; 0 skips the bootstrap. Default: 200.
        ci_level: central probability of the intervals. Default: 0.95.
        huber_delta: Huber threshold on log residuals; None for plain least squares. Default: 1e-3.
        exponent_grid: starting exponents. Default: ``DEFAULT_EXPONENT_GRID``.
        seed: seed or Generator for the bootstrap. Default: 0.
        floor: the data's known least logloss (or 1 - AUC), e.g. the Bayes limit of a synthetic world; E is
            fitted above it. Default: 0 (unknown).

    Returns:
        The fit, with intervals, R² and the held-out-largest-x extrapolation check (left out when fewer
        than 4 distinct x remain without the largest).

    Raises:
        ValueError: on non-positive or non-finite inputs, a logloss <= 0 or an AUC outside (0, 1), or
            fewer than 4 distinct x (3 parameters need at least one spare point).
    """
    return _fit(metric, (axis,), [x], y, n_bootstrap=n_bootstrap, ci_level=ci_level, huber_delta=huber_delta,
                exponent_grid=exponent_grid, seed=seed, floor=floor)


def fit_joint(
    n: ArrayLike,
    d: ArrayLike,
    y: ArrayLike,
    *,
    metric: Metric = "logloss",
    axes: tuple[str, str] = ("N", "D"),
    n_bootstrap: int = 200,
    ci_level: float = 0.95,
    huber_delta: float | None = 1e-3,
    exponent_grid: Sequence[float] = DEFAULT_EXPONENT_GRID,
    seed: int | np.random.Generator = 0,
    floor: float = 0.0,
) -> PowerLawFit:
    """Fit ``E + A / N**alpha + B / D**beta`` (or its AUC mirror) over a grid of (N, D) runs.

    Args:
        n: [S] model size > 0 (non-embedding params).
        d: [S] data size > 0 (training samples).
        y: [S] measured logloss (> 0) or AUC (in (0, 1)).
        metric: "logloss" or "auc". Default: "logloss".
        axes: names of the two axes. Default: ("N", "D").
        n_bootstrap: resamples for the intervals; 0 skips the bootstrap. Default: 200.
        ci_level: central probability of the intervals. Default: 0.95.
        huber_delta: Huber threshold on log residuals; None for plain least squares. Default: 1e-3.
        exponent_grid: starting exponents, every (alpha, beta) pair is tried. Default: ``DEFAULT_EXPONENT_GRID``.
        seed: seed or Generator for the bootstrap. Default: 0.
        floor: the data's known least logloss (or 1 - AUC); E is fitted above it. Default: 0 (unknown).

    Returns:
        The fit, with intervals, R² and two extrapolation checks (largest N held out, largest D held out;
        each left out when the remaining points no longer identify the law).

    Raises:
        ValueError: on non-positive or non-finite inputs, a logloss <= 0 or an AUC outside (0, 1), fewer
            than 3 distinct values of N or of D, or fewer than 6 distinct (N, D) points.
    """
    return _fit(metric, axes, [n, d], y, n_bootstrap=n_bootstrap, ci_level=ci_level, huber_delta=huber_delta,
                exponent_grid=exponent_grid, seed=seed, floor=floor)


def compute_optimal(fit: PowerLawFit, flops: float, *, flops_per_param_sample: float = 6.0) -> ComputeOptimal:
    """Closed-form compute-optimal (N, D) for a budget C = k * N * D under a joint fit.

    Setting dL/dN = 0 along D = C / (k N) gives ``alpha A N**(-alpha) = beta B D**(-beta)``, so
    ``N_opt = (alpha A / (beta B))**(1 / (alpha + beta)) * (C / k)**(beta / (alpha + beta))``.

    Args:
        fit: a joint fit whose axes are (parameters, samples).
        flops: budget C > 0.
        flops_per_param_sample: k. Default: 6.0 (training).

    Returns:
        The allocation and the predicted metric there.
    """
    log_a, alpha, log_b, beta = _joint_params(fit)
    log_nd = _log_budget(flops, flops_per_param_sample)
    log_n = (np.log(alpha) + log_a - np.log(beta) - log_b + beta * log_nd) / (alpha + beta)
    return _allocation(fit, flops, flops_per_param_sample, float(np.exp(log_n)))


def compute_optimal_ci(fit: PowerLawFit, flops: float, *, flops_per_param_sample: float = 6.0,
                       level: float = 0.95) -> dict:
    """Bootstrap interval of the compute-optimal N and D: the closed form at every resample's parameters.

    Args:
        fit: a joint fit with bootstrap resamples.
        flops: budget C.
        flops_per_param_sample: k. Default: 6.0.
        level: coverage. Default: 0.95.

    Returns:
        ``{"n_opt": (lo, hi), "d_opt": (lo, hi)}``, empty when the fit has no resamples.
    """
    if len(fit.bootstrap_params) == 0:
        return {}
    _joint_params(fit)  # a joint fit, or a clear error
    log_nd = _log_budget(flops, flops_per_param_sample)
    boot = fit.bootstrap_params  # [R, P]: log E, log A, alpha, log B, beta
    log_a, alpha, log_b, beta = boot[:, 1], boot[:, 2], boot[:, 3], boot[:, 4]
    log_n = (np.log(alpha) + log_a - np.log(beta) - log_b + beta * log_nd) / (alpha + beta)  # [R]
    q = 50.0 * (1.0 - level)
    n_lo, n_hi = np.exp(np.percentile(log_n, [q, 100.0 - q]))
    d_lo, d_hi = np.exp(log_nd) / n_hi, np.exp(log_nd) / n_lo  # D = (C / k) / N: the interval flips
    return {"n_opt": (float(n_lo), float(n_hi)), "d_opt": (float(d_lo), float(d_hi))}


def compute_optimal_numeric(
    fit: PowerLawFit, flops: float, *, flops_per_param_sample: float = 6.0
) -> ComputeOptimal:
    """Compute-optimal (N, D) by a bounded 1-D search over log N; checks ``compute_optimal``.

    Along the budget line the law is ``E + A e**(-alpha u) + B' e**(beta u)`` in u = log N, convex, so
    Brent's method on 1 <= N <= C / k finds the minimum without using the closed form.

    Args:
        fit: a joint fit whose axes are (parameters, samples).
        flops: budget C > 0.
        flops_per_param_sample: k. Default: 6.0.

    Returns:
        The allocation and the predicted metric there.
    """
    log_a, alpha, log_b, beta = _joint_params(fit)
    log_nd = _log_budget(flops, flops_per_param_sample)

    def reducible(u: float) -> float:
        return float(np.logaddexp(log_a - alpha * u, log_b - beta * (log_nd - u)))

    res = minimize_scalar(reducible, bounds=(0.0, log_nd), method="bounded", options={"xatol": 1e-10})
    return _allocation(fit, flops, flops_per_param_sample, float(np.exp(res.x)))


def compute_optimal_frontier(
    fit: PowerLawFit, flops: ArrayLike, *, flops_per_param_sample: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form compute-optimal N and D for many budgets.

    Args:
        fit: a joint fit whose axes are (parameters, samples).
        flops: [C] budgets > 0.
        flops_per_param_sample: k. Default: 6.0.

    Returns:
        (n_opt [C], d_opt [C]).
    """
    opts = [compute_optimal(fit, float(c), flops_per_param_sample=flops_per_param_sample) for c in np.ravel(flops)]
    return np.array([o.n_opt for o in opts]), np.array([o.d_opt for o in opts])


def _fit(
    metric: Metric,
    axes: Sequence[str],
    xs: Sequence[ArrayLike],
    y: ArrayLike,
    *,
    n_bootstrap: int,
    ci_level: float,
    huber_delta: float | None,
    exponent_grid: Sequence[float],
    seed: int | np.random.Generator,
    floor: float = 0.0,
) -> PowerLawFit:
    """Validate, fit from the grid, bootstrap and run the extrapolation checks."""
    logx, y = _validate(metric, axes, xs, y)
    if not (np.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be finite and >= 0, got {floor}")
    if not (_to_err(metric, y) > floor).all():
        what = "logloss" if metric == "logloss" else "1 - AUC"
        raise ValueError(f"every measured {what} must lie above the known floor {floor:.6g} (the data's Bayes "
                         f"limit): got {_to_err(metric, y).min():.6g}; is the floor of another split?")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if huber_delta is not None and not huber_delta > 0:
        raise ValueError(f"huber_delta must be > 0 or None, got {huber_delta}")
    logv = np.log(_to_err(metric, y) - floor)  # the part of the metric the law explains above the floor
    params = solve(logx, logv, huber_delta, exponent_grid)
    if not np.isfinite(params).all():
        raise RuntimeError(f"scaling fit of {metric} over {axes} did not converge")
    ss_res = float(np.sum((y - _predict(metric, params, list(np.exp(logx.T)), floor)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    boot = bootstrap(logx, logv, params, huber_delta, n_bootstrap, np.random.default_rng(seed))
    checks = []
    for j, name in enumerate(axes):
        held = logx[:, j] == logx[:, j].max()
        if identifiable(logx[~held]):
            refit = solve(logx[~held], logv[~held], huber_delta, exponent_grid)
            checks.append(ExtrapolationCheck(
                axis=name, held_out_value=float(np.exp(logx[held, j][0])),
                predicted=tuple(_predict(metric, refit, list(np.exp(logx[held].T)), floor).tolist()),
                observed=tuple(y[held].tolist()),
            ))
    return PowerLawFit(
        metric=metric, axes=tuple(axes), params=params, bootstrap_params=boot, ci_level=ci_level,
        r2=1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"), n_points=len(y), huber_delta=huber_delta,
        extrapolation=tuple(checks), floor=float(floor),
    )


def _validate(
    metric: Metric, axes: Sequence[str], xs: Sequence[ArrayLike], y: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Check the points; return (log x [S, K], y [S]) as float64."""
    if metric not in ("logloss", "auc"):
        raise ValueError(f"metric must be 'logloss' or 'auc', got {metric!r}")
    y = np.asarray(y, dtype=np.float64).ravel()
    cols = [np.asarray(x, dtype=np.float64).ravel() for x in xs]
    for name, col in zip(axes, cols, strict=True):
        if col.shape != y.shape:
            raise ValueError(f"axis {name!r} has {col.size} values but there are {y.size} measurements")
        if not (np.isfinite(col).all() and (col > 0).all()):
            raise ValueError(f"axis {name!r} values must be finite and > 0")
    if not np.isfinite(y).all():
        raise ValueError("measurements must be finite")
    if metric == "logloss" and not (y > 0).all():
        raise ValueError("logloss measurements must be > 0")
    if metric == "auc" and not ((y > 0) & (y < 1)).all():
        raise ValueError("AUC measurements must be in (0, 1)")
    logx = np.log(np.column_stack(cols))
    if not identifiable(logx):
        raise ValueError(f"need >= 3 distinct values on every axis and >= {2 + 2 * len(axes)} distinct points")
    return logx, y


def _json_float(v: float) -> float | None:
    """A float for JSON: NaN (no bootstrap, constant data) becomes None."""
    return None if np.isnan(v) else float(v)


def _to_err(metric: Metric, y: np.ndarray) -> np.ndarray:
    """The positive quantity that is fitted: logloss itself, or 1 - AUC."""
    return y if metric == "logloss" else 1.0 - y


def _predict(metric: Metric, params: np.ndarray, xs: Sequence[ArrayLike], floor: float = 0.0) -> np.ndarray:
    """Metric predicted from raw parameters for one array per axis (``floor`` added to logloss or 1 - AUC)."""
    err = floor + np.exp(log_predict(params, [np.log(np.asarray(x, dtype=np.float64)) for x in xs]))
    return err if metric == "logloss" else 1.0 - err


def _named(metric: Metric, p: np.ndarray, floor: float = 0.0) -> dict[str, float]:
    """Raw parameter vector -> named coefficients (E includes the known ``floor``)."""
    e = floor + float(np.exp(p[0]))
    out = {"E": e} if metric == "logloss" else {"AUC_inf": 1.0 - e}
    names = [("log_A", "alpha"), ("log_B", "beta")]
    for j in range((len(p) - 1) // 2):
        out[names[j][0]], out[names[j][1]] = float(p[1 + 2 * j]), float(p[2 + 2 * j])
    return out


def _joint_params(fit: PowerLawFit) -> tuple[float, float, float, float]:
    """(log A, alpha, log B, beta) of a joint fit."""
    if len(fit.axes) != 2:
        raise ValueError(f"compute-optimal allocation needs a joint (N, D) fit, got axes {fit.axes}")
    return tuple(float(v) for v in fit.params[1:5])


def _log_budget(flops: float, k: float) -> float:
    """log(C / k), the log of N * D on the budget line; C / k must allow N, D >= 1."""
    if not (np.isfinite(flops) and np.isfinite(k) and k > 0 and flops >= k):
        raise ValueError(f"need flops >= flops_per_param_sample > 0, got flops={flops}, k={k}")
    return float(np.log(flops / k))


def _allocation(fit: PowerLawFit, flops: float, k: float, n_opt: float) -> ComputeOptimal:
    """Assemble a ComputeOptimal from N_opt on the budget line."""
    _, alpha, _, beta = _joint_params(fit)
    d_opt = flops / (k * n_opt)
    return ComputeOptimal(
        flops=float(flops), flops_per_param_sample=float(k), n_opt=n_opt, d_opt=float(d_opt),
        metric_opt=float(fit.predict(n_opt, d_opt)), n_exponent=beta / (alpha + beta),
        d_exponent=alpha / (alpha + beta),
    )
