"""The one rule that turns ``backend="auto"`` into a concrete backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

Backend = Literal["auto", "naive", "torch", "triton"]
BACKENDS = ("auto", "naive", "torch", "triton")


def resolve(backend: str, tensor: torch.Tensor, has_triton: bool) -> str:
    """``auto`` → ``triton`` on CUDA when the op has a Triton path, else ``torch``.

    Args:
        backend: requested backend.
        tensor: an input (its device decides).
        has_triton: whether the op ships a Triton path.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "triton" if has_triton and tensor.is_cuda else "torch"
    if backend == "triton" and not has_triton:
        raise NotImplementedError("this op has no Triton path yet")
    return backend
