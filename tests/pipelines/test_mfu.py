"""MFU: the peak is measured by a real matmul, and the ratio follows its definition."""

from __future__ import annotations

import pytest
import torch

from pipelines.mfu import matmul_peak, mfu


def test_the_matmul_probe_measures_a_plausible_peak():
    peak = matmul_peak(size=256, repeats=3)
    # between 10 MFLOP/s (far below any CPU) and 100 TFLOP/s (far above any CPU core here)
    assert 1e7 < peak < 1e14
    assert matmul_peak(size=256, repeats=3, dtype=torch.float64) < 4 * peak  # fp64 is never much faster


def test_mfu_is_training_flops_over_the_peak():
    assert mfu(1e6, 100.0, 3e9) == pytest.approx(0.1)  # 3 x 1e6 FLOPs x 100 samples/s over 3e9 FLOP/s
    assert mfu(1e6, 100.0, 0.0) == 0.0
