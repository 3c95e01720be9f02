"""Model FLOP utilisation: achieved training FLOP/s over this machine's measured matrix-multiply peak.

The peak is measured, not looked up (nanoGPT's ``estimate_mfu`` hard-codes an A100's 312 TFLOP/s): a
square fp32 matmul timed on the same device with the same thread count as the training run, so MFU on
a laptop CPU and on a GPU read the same way.
"""

from __future__ import annotations

import time

import torch

# one forward multiply-add is 2 FLOPs (counted in flops_per_sample); the backward pass costs twice the forward
TRAIN_FLOPS_PER_FORWARD = 3.0


def matmul_peak(size: int = 1024, repeats: int = 8, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of the best of ``repeats`` timed ``size``×``size`` matmuls (after one warm-up).

    Args:
        size: the matrices' side. Default: 1024.
        repeats: timed products; the fastest one counts (the machine's capability, not its noise). Default: 8.
        device: where to measure. Default: cpu.
        dtype: the training dtype. Default: float32.
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up: allocator, kernel selection
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2.0 * size**3 / best


def mfu(flops_per_sample: float, samples_per_second: float, peak: float) -> float:
    """Achieved training FLOP/s (``3 × forward FLOPs × samples/s``) as a share of ``peak``."""
    return TRAIN_FLOPS_PER_FORWARD * flops_per_sample * samples_per_second / peak if peak > 0 else 0.0
