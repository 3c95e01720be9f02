"""Scaling plots are written as real, non-blank PNG images."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from scaling.fit import fit_axis, fit_joint
from scaling.plots import plot_axis_fit, plot_joint_contours

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# low resolution keeps the tests fast; the drawing is the same at any dpi
DPI = 60
N = np.repeat(np.geomspace(1e5, 1e8, 4), 4)
FRACTION = np.tile([0.125, 0.25, 0.5, 1.0], 4)
D = FRACTION * 1e9
NOISE = np.exp(np.random.default_rng(0).normal(0.0, 1e-3, N.size))
LOGLOSS = (0.42 + 0.05 * (N / 1e5) ** -0.35 + 0.06 * (D / 1e7) ** -0.28) * NOISE
AUC = (0.80 - 0.15 * (N / 1e5) ** -0.25 - 0.05 * (D / 1e7) ** -0.3) * NOISE


def _check_png(path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)  # [H, W, 4] floats in [0, 1]
    assert image.ndim == 3 and image.shape[0] >= 300 and image.shape[1] >= 450
    # a blank or single-colour canvas has no variance; a drawn figure has plenty
    assert image[..., :3].std() > 0.05
    assert len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 100


@pytest.mark.parametrize(("metric", "coloured"), [("logloss", True), ("auc", False)])
def test_axis_plot_is_written(tmp_path, metric, coloured):
    y = LOGLOSS if metric == "logloss" else AUC
    full = FRACTION == 1.0
    fit = fit_axis(N[full], y[full], metric=metric, axis="non-embedding params", n_bootstrap=20)
    path = tmp_path / "sub" / f"{metric}.png"
    written = plot_axis_fit(fit, N, y, path, color_by=FRACTION if coloured else None, dpi=DPI)
    assert written == path
    _check_png(path)


@pytest.mark.parametrize("metric", ["logloss", "auc"])
def test_joint_contour_plot_is_written(tmp_path, metric):
    y = LOGLOSS if metric == "logloss" else AUC
    fit = fit_joint(N, D, y, metric=metric, n_bootstrap=0)
    _check_png(plot_joint_contours(fit, N, D, y, tmp_path / "joint.png", flops_per_param_sample=6.0,
                                   dpi=DPI))


def test_plots_reject_the_wrong_kind_of_fit(tmp_path):
    axis_fit = fit_axis(N[FRACTION == 1.0], LOGLOSS[FRACTION == 1.0], n_bootstrap=0)
    joint_fit = fit_joint(N, D, LOGLOSS, n_bootstrap=0)
    with pytest.raises(ValueError, match="joint"):
        plot_joint_contours(axis_fit, N, D, LOGLOSS, tmp_path / "x.png")
    with pytest.raises(ValueError, match="per-axis"):
        plot_axis_fit(joint_fit, N, LOGLOSS, tmp_path / "y.png")
