"""Scaling-law figures written as PNG files (matplotlib Agg canvas, no pyplot global state).

- ``plot_axis_fit``: metric against one axis on a log x-axis, the measured points (optionally coloured
  by another axis, e.g. the data fraction), the fitted law and its shaded bootstrap band; the curve is
  dashed beyond the largest measured x, where it is an extrapolation.
- ``plot_joint_contours``: iso-metric contours of a joint L(N, D) fit over log N × log D, the measured
  runs overlaid in the same colour scale, a few iso-FLOP lines and the compute-optimal frontier.
- ``plot_sweep_grid``: every measured point, no fit: the metric against model size with one line per
  data fraction, and against training samples with one line per grade (where a law bends shows here).
- ``plot_lr_curves``: valid logloss against the learning rate per grade, the chosen rate ringed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from scaling.fit import PowerLawFit, compute_optimal_frontier

_METRIC_LABEL = {"logloss": "logloss (lower is better)", "auc": "AUC (higher is better)"}
_METRIC_NAME = {"logloss": "logloss", "auc": "AUC"}


def plot_axis_fit(
    fit: PowerLawFit,
    x: ArrayLike,
    y: ArrayLike,
    path: str | Path,
    *,
    color_by: ArrayLike | None = None,
    color_label: str = "data fraction",
    x_label: str | None = None,
    title: str | None = None,
    extend: float = 4.0,
    dpi: int = 120,
) -> Path:
    """Plot a per-axis fit: points, fitted curve and bootstrap band, on a log x-axis.

    Args:
        fit: a per-axis fit (one axis).
        x: [S] axis values of the points to show.
        y: [S] measured metric of those points.
        path: output PNG file; parent folders are created.
        color_by: [S] values that colour the points (e.g. data fraction); None for one colour. Default: None.
        color_label: colour-bar label. Default: "data fraction".
        x_label: x-axis label. Default: the fit's axis name.
        title: figure title. Default: "<metric> vs <axis>".
        extend: the curve runs to ``extend`` times the largest x. Default: 4.0.
        dpi: resolution of the PNG (the figure is 7.5 x 5 inches). Default: 120.

    Returns:
        The path written.
    """
    if len(fit.axes) != 1:
        raise ValueError(f"plot_axis_fit needs a per-axis fit, got axes {fit.axes}")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    fig = Figure(figsize=(7.5, 5.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    grid = np.geomspace(x.min() / 1.5, x.max() * extend, 300)
    lo, hi = fit.prediction_band(grid)
    inside = grid <= x.max()
    coef, ci = fit.coefficients, fit.ci
    pct = round(100 * fit.ci_level)
    ax.fill_between(grid, lo, hi, color="tab:blue", alpha=0.2, lw=0, label=f"{pct}% bootstrap band")
    floor = f"E={coef['E']:.4f}" if fit.metric == "logloss" else f"AUC∞={coef['AUC_inf']:.4f}"
    ax.plot(grid[inside], fit.predict(grid[inside]), color="tab:blue", lw=2,
            label=f"fit: α={coef['alpha']:.3f} [{ci['alpha'][0]:.3f}, {ci['alpha'][1]:.3f}], {floor}, "
                  f"R²={fit.r2:.3f}")
    ax.plot(grid[~inside], fit.predict(grid[~inside]), color="tab:blue", lw=2, ls="--", label="extrapolation")
    if color_by is None or len(np.unique(np.asarray(color_by, dtype=np.float64))) < 2:
        # one colour value carries no information: no colour bar
        ax.scatter(x, y, color="black", s=36, zorder=3, label="measured")
    else:
        c = np.asarray(color_by, dtype=np.float64)
        norm = LogNorm(c.min(), c.max()) if c.min() > 0 and c.max() > 10 * c.min() else Normalize(c.min(), c.max())
        sc = ax.scatter(x, y, c=c, cmap="viridis", norm=norm, s=44, edgecolors="black", linewidths=0.5,
                        zorder=3, label="measured")
        fig.colorbar(sc, ax=ax, label=color_label)
    ax.set_xscale("log")
    ax.set_ylim(*_y_limits(y, fit.predict(grid)))
    ax.set_xlabel(x_label or fit.axes[0])
    ax.set_ylabel(_METRIC_LABEL[fit.metric])
    ax.set_title(title or f"{_METRIC_NAME[fit.metric]} vs {fit.axes[0]}: {fit.form}", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def _y_limits(points: np.ndarray, curve: np.ndarray) -> tuple[float, float]:
    """Limits around the points and the fitted curve: a wild bootstrap resample must not flatten the plot."""
    values = np.concatenate([points, curve[np.isfinite(curve)]])
    lo, hi = float(values.min()), float(values.max())
    pad = max(hi - lo, 1e-3 * max(abs(hi), 1e-12)) * 0.25
    return lo - pad, hi + pad


def plot_joint_contours(
    fit: PowerLawFit,
    n: ArrayLike,
    d: ArrayLike,
    y: ArrayLike,
    path: str | Path,
    *,
    flops_per_param_sample: float = 6.0,
    n_label: str | None = None,
    d_label: str | None = None,
    title: str | None = None,
    n_levels: int = 12,
    dpi: int = 120,
) -> Path:
    """Plot iso-metric contours of a joint fit with the runs, iso-FLOP lines and the compute-optimal frontier.

    Args:
        fit: a joint fit over (parameters, samples).
        n: [S] parameters of the runs to overlay.
        d: [S] samples of those runs.
        y: [S] their measured metric.
        path: output PNG file; parent folders are created.
        flops_per_param_sample: k in C = k * N * D. Default: 6.0.
        n_label: x-axis label. Default: the fit's first axis name.
        d_label: y-axis label. Default: the fit's second axis name.
        title: figure title. Default: the fitted form.
        n_levels: number of contour levels, spaced evenly in log of the distance to the floor. Default: 12.
        dpi: resolution of the PNG (the figure is 8 x 6 inches). Default: 120.

    Returns:
        The path written.
    """
    if len(fit.axes) != 2:
        raise ValueError(f"plot_joint_contours needs a joint fit, got axes {fit.axes}")
    n, d, y = (np.asarray(v, dtype=np.float64) for v in (n, d, y))
    k = flops_per_param_sample
    gn = np.geomspace(n.min() / 3, n.max() * 3, 150)
    gd = np.geomspace(d.min() / 3, d.max() * 3, 150)
    nn, dd = np.meshgrid(gn, gd)  # [150, 150] rows follow D
    z = fit.predict(nn, dd)
    floor = fit.coefficients["E"] if fit.metric == "logloss" else fit.coefficients["AUC_inf"]
    gap = np.abs(z - floor)
    levels = np.sort(floor + np.sign(z.mean() - floor) * np.geomspace(gap.min(), gap.max(), n_levels))
    fig = Figure(figsize=(8.0, 6.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = "viridis_r" if fit.metric == "logloss" else "viridis"
    norm = Normalize(levels[0], levels[-1])
    filled = ax.contourf(nn, dd, z, levels=levels, cmap=cmap, norm=norm, extend="both")
    lines = ax.contour(nn, dd, z, levels=levels, colors="white", linewidths=0.6)
    for text in ax.clabel(lines, fmt="%.4f", fontsize=7, colors="black"):
        text.set_bbox({"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 0.6})
    fig.colorbar(filled, ax=ax, label=f"fitted {_METRIC_LABEL[fit.metric]}")
    ax.scatter(n, d, c=y, cmap=cmap, norm=norm, s=70, edgecolors="black", linewidths=1.2, zorder=4,
               label="measured runs (same colour scale)")
    c_lo, c_hi = k * gn[0] * gd[0], k * gn[-1] * gd[-1]
    for c in 10.0 ** np.arange(np.ceil(np.log10(c_lo)), np.floor(np.log10(c_hi)) + 1):
        visible = gn[(c / (k * gn) >= gd[0]) & (c / (k * gn) <= gd[-1])]
        if len(visible) < 10:
            continue
        ax.plot(gn, c / (k * gn), color="0.15", lw=0.9, ls=":")
        n_mid = float(np.sqrt(visible[0] * visible[-1]))
        ax.text(n_mid, c / (k * n_mid), f"C=1e{np.log10(c):.0f}", fontsize=7, ha="center", va="center",
                rotation=-35, bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 0.6})
    n_opt, d_opt = compute_optimal_frontier(fit, np.geomspace(c_lo, c_hi, 100), flops_per_param_sample=k)
    inside = (n_opt >= gn[0]) & (n_opt <= gn[-1]) & (d_opt >= gd[0]) & (d_opt <= gd[-1])
    alpha, beta = fit.params[2], fit.params[4]
    ax.plot(n_opt[inside], d_opt[inside], color="red", lw=2.2,
            label=f"compute-optimal: N ∝ C^{beta / (alpha + beta):.2f}, D ∝ C^{alpha / (alpha + beta):.2f}")
    ax.plot([], [], color="0.25", lw=0.8, ls=":", label=f"iso-FLOP lines, C = {k:g}·N·D")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(gn[0], gn[-1])
    ax.set_ylim(gd[0], gd[-1])
    ax.set_xlabel(n_label or fit.axes[0])
    ax.set_ylabel(d_label or fit.axes[1])
    ax.set_title(title or f"{fit.form}  (R²={fit.r2:.3f})", fontsize=11)
    ax.legend(fontsize=8, loc="lower left", framealpha=0.9)
    return _save(fig, path)


def plot_sweep_grid(points: list[dict], metric: str, path: str | Path, *, size_key: str = "params_encoder",
                    size_label: str = "encoder parameters (non-embedding)", dpi: int = 120) -> Path:
    """Two panels of measured points: metric vs ``size_key`` per data fraction, and vs samples per grade.

    Args:
        points: sweep points (``grade``, ``fraction``, ``train_samples``, ``size_key``, ``test_<metric>``).
        metric: "logloss" or "auc".
        path: output PNG file.
        size_key: the model-size axis. Default: "params_encoder".
        size_label: its axis label. Default: "encoder parameters (non-embedding)".
        dpi: resolution. Default: 120.

    Returns:
        The path written.
    """
    key = f"test_{metric}"
    fig = Figure(figsize=(11.0, 4.6), dpi=dpi)
    FigureCanvasAgg(fig)
    for ax, (line_key, x_key, legend, x_label) in zip(
            fig.subplots(1, 2),
            [("fraction", size_key, "data fraction", size_label),
             ("grade", "train_samples", "grade", "training samples")], strict=True):
        for value in sorted({pt[line_key] for pt in points}):
            line = sorted((pt for pt in points if pt[line_key] == value), key=lambda pt: pt[x_key])
            ax.plot([pt[x_key] for pt in line], [pt[key] for pt in line], marker="o", label=f"{legend} {value:g}")
        ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(_METRIC_LABEL[metric])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"measured {_METRIC_NAME[metric]} of every sweep point")
    return _save(fig, path)


def plot_lr_curves(searched: list[dict], path: str | Path, dpi: int = 120) -> Path:
    """Valid logloss against the learning rate, one line per (grade, length, data fraction), chosen rates ringed.

    Args:
        searched: points with ``grade``, ``seq_len_set``, ``fraction``, ``lr_set``, ``valid_logloss``, ``chosen``.
        path: output PNG file.
        dpi: resolution. Default: 120.

    Returns:
        The path written.
    """
    fig = Figure(figsize=(6.4, 4.6), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    cells = sorted({(p["grade"], p["seq_len_set"], p["fraction"]) for p in searched})
    for grade, length, fraction in cells:
        line = sorted((p for p in searched if (p["grade"], p["seq_len_set"], p["fraction"]) == (grade, length, fraction)),
                      key=lambda p: p["lr_set"])
        label = f"grade {grade}" + (f", L {length}" if length else "") + (f", data {fraction:g}" if fraction < 1 else "")
        drawn = ax.plot([p["lr_set"] for p in line], [p["valid_logloss"] for p in line], marker="o", label=label)
        best = [p for p in line if p["chosen"]]
        ax.scatter([p["lr_set"] for p in best], [p["valid_logloss"] for p in best], s=160, facecolors="none",
                   edgecolors=drawn[0].get_color(), linewidths=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("valid logloss (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("learning rate per grade (ringed: chosen on valid)")
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    """Write the figure as PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=fig.dpi)
    return path
