"""Triton kernel tests: on a machine without CUDA the kernels run in the Triton interpreter.

``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before anything imports triton (Triton reads it when
``triton.language`` and our kernels are decorated); the line below only covers running this folder with
another root conftest. With CUDA the kernels are compiled instead. NaN-poisoned allocations come from
``tests/suan/ops/conftest.py``, as for every op.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
