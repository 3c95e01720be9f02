"""The reference ops' working precision: at least float32, never lower than the input's."""

from __future__ import annotations

import torch
from torch import Tensor

_WIDE = (torch.float32, torch.float64)


def at_least_fp32(x: Tensor) -> Tensor:
    """``x`` in float32 when it is narrower (bf16/fp16 inputs are upcast for softmax and sums), else as it is.

    ``x.float()`` would also *round* a float64 input to float32, so a float64 model (gradient checks, exact
    incremental == full tests) computed its attention in float32; this keeps float64 as float64.
    """
    return x if x.dtype in _WIDE else x.float()


def working_dtype(x: Tensor) -> torch.dtype:
    """The dtype :func:`at_least_fp32` gives ``x``: for buffers the reference ops fill (``torch.zeros`` is fp32)."""
    return x.dtype if x.dtype in _WIDE else torch.float32
