"""Triton kernel tests: on a machine without CUDA the kernels run in the Triton interpreter.

``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before anything imports triton (Triton reads it when
``triton.language`` and our kernels are decorated); the line below only covers running this folder with
another root conftest. With CUDA the kernels are compiled instead.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _poisoned(factory):
    def empty(*args, **kwargs):
        out = factory(*args, **kwargs)
        if out.is_floating_point():
            out.fill_(float("nan"))
        return out

    return empty


@pytest.fixture(autouse=True)
def nan_poisoned_empty(monkeypatch):
    """``torch.empty``/``empty_like`` return NaN-filled float tensors, so memory a kernel forgets to write
    (an output row, a gradient row, a log-sum-exp) shows up as NaN instead of as leftover zeros."""
    monkeypatch.setattr(torch, "empty", _poisoned(torch.empty))
    monkeypatch.setattr(torch, "empty_like", _poisoned(torch.empty_like))
