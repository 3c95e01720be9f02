"""Numerical core of the scaling fits: log-space power law, Huber least squares, multi-start, bootstrap.

Internal: ``scaling.fit`` is the public API and documents the method. Here the fitted quantity v is
positive (logloss, or 1 - AUC), the axes arrive as logs ``logx [S, K]``, and a parameter vector [P],
P = 1 + 2K, is ``[log E, log A_1, alpha_1, ..., log A_K, alpha_K]``: "raw" when the A refer to x
itself, "normalised" when they refer to x over its geometric mean (what the optimiser sees).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import OptimizeResult, least_squares, nnls

DEFAULT_EXPONENT_GRID: tuple[float, ...] = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)
# exponents of CTR and LM scaling laws sit well inside this range; the lower bound keeps the optimiser
# away from the degenerate alpha -> 0 limit where A and E trade off freely.
EXPONENT_BOUNDS = (1e-3, 5.0)
# least_squares runs only from the best grid starts, ranked by the Huber cost at the start: on 180
# synthetic fits (noise up to 0.3 %, 5 % outliers, per-axis and joint) the best 4 reached the same
# optimum as all 64 joint pairs, at a sixteenth of the cost.
MAX_STARTS = 4


def identifiable(logx: np.ndarray, spare: int = 1) -> bool:
    """At least 3 distinct values per axis and ``spare`` more distinct points than parameters."""
    n_params = 1 + 2 * logx.shape[1]
    distinct_axes = all(len(np.unique(col)) >= 3 for col in logx.T)
    return distinct_axes and len(np.unique(logx, axis=0)) >= n_params + spare


def solve(
    logx: np.ndarray,
    logv: np.ndarray,
    huber_delta: float | None,
    exponent_grid: Sequence[float] = (),
    starts: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Multi-start robust least squares on log residuals.

    Args:
        logx: [S, K] log of the axis values.
        logv: [S] log of the fitted positive quantity.
        huber_delta: Huber threshold on log residuals; None for plain least squares.
        exponent_grid: exponents tried per axis when ``starts`` is None.
        starts: raw parameter vectors [P] to start from instead of the grid.

    Returns:
        [P] raw parameters of the lowest-cost run; NaN when nothing ran.
    """
    mu = logx.mean(axis=0)
    # the optimiser sees log(x / geometric mean) so that log A and alpha are not correlated by 1e9 scales
    z = logx - mu  # [S, K]
    k = z.shape[1]
    if starts is None:
        grid = np.array(np.meshgrid(*[exponent_grid] * k)).reshape(k, -1).T  # [G, K]
        thetas = [_linear_start(z, logv, g) for g in grid]
        costs = [_huber_cost(_residuals(t, z, logv), huber_delta) for t in thetas]
        thetas = [thetas[i] for i in np.argsort(costs)[:MAX_STARTS]]
    else:
        thetas = [_to_normalised(p, mu) for p in starts]
    lo_v, hi_v = logv.min(), logv.max()
    lower = np.r_[lo_v - 30.0, np.tile([lo_v - 30.0, EXPONENT_BOUNDS[0]], k)]
    upper = np.r_[hi_v, np.tile([hi_v + 2.0, EXPONENT_BOUNDS[1]], k)]
    best, best_cost = None, np.inf
    for theta0 in thetas:
        theta = np.clip(theta0, lower + 1e-9, upper - 1e-9)
        if starts is None and huber_delta is not None:
            # scipy's Huber steps are short while most residuals exceed delta: a plain least-squares
            # pass first brings a far grid start close in ~10 evaluations instead of ~100
            theta = _least_squares(theta, z, logv, (lower, upper), None).x
        res = _least_squares(theta, z, logv, (lower, upper), huber_delta)
        if res.cost < best_cost:
            best, best_cost = res.x, res.cost
    if best is None:
        return np.full(1 + 2 * k, np.nan)
    return _to_raw(best, mu)


def bootstrap(
    logx: np.ndarray,
    logv: np.ndarray,
    params: np.ndarray,
    huber_delta: float | None,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Refit on points resampled with replacement, each run started at the full-data optimum.

    Args:
        logx: [S, K] log of the axis values.
        logv: [S] log of the fitted positive quantity.
        params: [P] raw full-data optimum.
        huber_delta: as in ``solve``.
        n_bootstrap: resamples wanted; at most ``10 * n_bootstrap`` are drawn.
        rng: the resampling generator.

    Returns:
        [R, P] raw parameters of the successful resamples, R <= n_bootstrap.
    """
    out, attempts = [], 0
    while len(out) < n_bootstrap and attempts < 10 * n_bootstrap:
        attempts += 1
        idx = rng.integers(0, len(logv), size=len(logv))
        # a resample may interpolate (no spare point) but must pin every parameter
        if not identifiable(logx[idx], spare=0):
            continue
        p = solve(logx[idx], logv[idx], huber_delta, starts=[params])
        if np.isfinite(p).all():
            out.append(p)
    return np.array(out).reshape(len(out), len(params))


def log_predict(params: np.ndarray, logs: Sequence[np.ndarray]) -> np.ndarray:
    """Predicted log v from raw parameters [P] and one broadcastable array of log x per axis."""
    logs = np.broadcast_arrays(*logs)
    terms = [np.full(logs[0].shape, params[0])]
    terms += [params[1 + 2 * j] - params[2 + 2 * j] * lx for j, lx in enumerate(logs)]
    return logsumexp(np.stack(terms), axis=0)


def logsumexp(t: np.ndarray, axis: int) -> np.ndarray:
    """Stable log(sum(exp(t))) along axis; scipy's version costs ~10x more per call on these tiny arrays."""
    m = t.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.exp(t - m).sum(axis=axis))


def _least_squares(
    theta0: np.ndarray,
    z: np.ndarray,
    logv: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    huber_delta: float | None,
) -> OptimizeResult:
    """One bounded trust-region run from a normalised start."""
    return least_squares(
        _residuals, theta0, jac=_jacobian, bounds=bounds, args=(z, logv),
        loss="linear" if huber_delta is None else "huber", f_scale=huber_delta or 1.0,
        xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=2000,
    )


def _linear_start(z: np.ndarray, logv: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """Normalised start for fixed exponents [K]: E and amplitudes by non-negative relative least squares."""
    v = np.exp(logv)
    # with the exponents fixed the law is linear in (E, A_1, ..., A_K); dividing by v makes it relative
    design = np.column_stack([np.ones_like(v), np.exp(-z * exponents)]) / v[:, None]  # [S, 1 + K]
    coef, _ = nnls(design, np.ones_like(v))
    coef = np.maximum(coef, 1e-6 * v.min())
    theta = np.empty(1 + 2 * len(exponents))
    theta[0] = np.log(coef[0])
    theta[1::2], theta[2::2] = np.log(coef[1:]), exponents
    return theta


def _huber_cost(r: np.ndarray, huber_delta: float | None) -> float:
    """The objective least_squares minimises (up to a constant factor), for ranking starts."""
    if huber_delta is None:
        return float(np.sum(r**2))
    a = np.abs(r) / huber_delta
    return float(np.sum(np.where(a <= 1.0, a**2, 2.0 * a - 1.0)))


def _log_terms(theta: np.ndarray, z: np.ndarray) -> np.ndarray:
    """[S, 1 + K] logs of the floor and of each power-law term."""
    return np.column_stack([np.full(len(z), theta[0]), theta[1::2] - theta[2::2] * z])


def _residuals(theta: np.ndarray, z: np.ndarray, logv: np.ndarray) -> np.ndarray:
    """[S] log predicted minus log observed."""
    return logsumexp(_log_terms(theta, z), axis=1) - logv


def _jacobian(theta: np.ndarray, z: np.ndarray, logv: np.ndarray) -> np.ndarray:
    """[S, P] derivative of the residuals: each log term's share of the prediction (a softmax)."""
    t = _log_terms(theta, z)
    w = np.exp(t - logsumexp(t, axis=1)[:, None])  # [S, 1 + K]
    jac = np.empty((len(z), len(theta)))
    jac[:, 0] = w[:, 0]
    jac[:, 1::2] = w[:, 1:]
    jac[:, 2::2] = -w[:, 1:] * z
    return jac


def _to_raw(theta: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """A_n * (x / x0)**(-alpha) = (A_n * x0**alpha) * x**(-alpha), so log A = log A_n + alpha * log x0."""
    p = theta.copy()
    p[1::2] = theta[1::2] + theta[2::2] * mu
    return p


def _to_normalised(p: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Inverse of ``_to_raw``."""
    theta = p.copy()
    theta[1::2] = p[1::2] - p[2::2] * mu
    return theta
