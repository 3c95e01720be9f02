"""The op tests' allocations really are poisoned (``conftest.py``), so a test that relies on it can fail."""

from __future__ import annotations

import torch


def test_allocations_in_op_tests_are_nan():
    assert torch.isnan(torch.empty(3)).all() and torch.isnan(torch.empty_like(torch.zeros(2))).all()
    assert torch.empty(2, dtype=torch.int64).shape == (2,)  # integer buffers are left as they are
