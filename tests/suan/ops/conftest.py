"""Every op test runs with NaN-poisoned ``torch.empty``: memory an op forgets to write fails loudly (fla's rule)."""

from __future__ import annotations

import pytest
import torch


def _poisoned(factory):
    def empty(*args, **kwargs):
        out = factory(*args, **kwargs)
        if out.is_floating_point():
            out.fill_(float("nan"))
        return out

    return empty


@pytest.fixture(autouse=True)
def nan_poisoned_empty(monkeypatch):
    """``torch.empty``/``empty_like`` return NaN-filled float tensors, so memory an op or kernel forgets to write
    (an output row, a gradient row, a log-sum-exp) shows up as NaN instead of as leftover zeros."""
    monkeypatch.setattr(torch, "empty", _poisoned(torch.empty))
    monkeypatch.setattr(torch, "empty_like", _poisoned(torch.empty_like))

