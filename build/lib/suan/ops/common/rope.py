"""Rotary position embedding (RoPE) of queries and keys by token position, in real arithmetic.

Each pair of channels ``(x_i, x_{i + D/2})`` is rotated by the angle ``pos · base^(-2i/D)``
(the half-split layout of GPT-NeoX), so ``q_i · k_j`` depends on ``pos_i - pos_j`` only. The
cos/sin tables are computed from the positions with tensor ops (no complex numbers, no cached
table sized by a maximum length), so the graph exports to ONNX with a dynamic L.
"""

from __future__ import annotations

import torch
from torch import Tensor

ROPE_BASE = 10_000.0


def rope_tables(pos: Tensor, head_dim: int, base: float = ROPE_BASE) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotation angles.

    Args:
        pos: [B, L] int64 token positions (``suan.ops.common.masks.positions``: candidates at n_hist).
        head_dim: D, even.
        base: frequency base. Default: 10000.

    Returns:
        ``(cos, sin)``, each [B, 1, L, D] float32.
    """
    if head_dim % 2:
        raise ValueError(f"rope needs an even head dim, got {head_dim}")
    half = head_dim // 2
    exponent = torch.arange(half, device=pos.device, dtype=torch.float32) * (-2.0 / head_dim)  # [D/2]
    inv_freq = torch.pow(torch.full_like(exponent, base), exponent)  # [D/2]
    angles = pos.to(torch.float32).unsqueeze(-1) * inv_freq  # [B, L, D/2]
    angles = torch.cat([angles, angles], dim=-1).unsqueeze(1)  # [B, 1, L, D]
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` by the tables of :func:`rope_tables`.

    Args:
        x: [B, H, L, D] queries or keys.
        cos, sin: [B, 1, L, D].

    Returns:
        [B, H, L, D], the dtype of ``x``.
    """
    x1, x2 = x.chunk(2, dim=-1)  # 2 x [B, H, L, D/2]
    rotated = torch.cat([-x2, x1], dim=-1)  # [B, H, L, D]
    return (x * cos.to(x.dtype) + rotated * sin.to(x.dtype)).to(x.dtype)
