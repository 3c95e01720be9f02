"""The one rule that turns ``backend="auto"`` into a concrete backend."""

from __future__ import annotations

import functools
import importlib.util
from typing import TYPE_CHECKING, Literal

# torch only for type checking: configs import BACKENDS, and the torch-free serving process imports configs
if TYPE_CHECKING:
    import torch

Backend = Literal["auto", "naive", "torch", "triton"]
BACKENDS = ("auto", "naive", "torch", "triton")


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package is installed (it is not on macOS or Windows)."""
    return importlib.util.find_spec("triton") is not None


def tracing() -> bool:
    """Inside ONNX export, torch.export, torch.compile or TorchScript tracing: the graph needs the torch
    path, and shapes must not follow one batch's values."""
    import torch

    return (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()
            or torch.compiler.is_exporting())


def resolve(backend: str, tensor: torch.Tensor, has_triton: bool) -> str:
    """``auto`` → ``triton`` on CUDA when the op has a Triton path and triton is installed, else ``torch``.

    ``auto`` also means ``torch`` while exporting or compiling (ONNX keeps the torch path).

    Args:
        backend: requested backend.
        tensor: an input (its device decides).
        has_triton: whether the op ships a Triton path.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        use_triton = has_triton and tensor.is_cuda and triton_available() and not tracing()
        return "triton" if use_triton else "torch"
    if backend == "triton" and not has_triton:
        raise NotImplementedError("this op has no Triton path yet")
    if backend == "triton" and not triton_available():
        raise NotImplementedError("backend='triton' needs the triton package, which is not installed")
    return backend
