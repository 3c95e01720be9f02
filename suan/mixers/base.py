"""The mixer contract and its config.

A mixer maps ``x [B, L, D]`` to ``[B, L, D]`` over a right-padded, target-aware sequence:
``lengths [B]`` valid tokens, of which the last ``num_targets [B]`` are candidates that see the
history and themselves only; ``timestamps [B, L]`` int64. Outputs at padded positions are zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from suan.ops.common.backend import BACKENDS
from suan.utils.config import Config, require


@dataclass(frozen=True, kw_only=True, slots=True)
class MixerConfig(Config):
    """Options every mixer understands.

    Args:
        name: registry name of the mixer.
        d_model: D.
        num_heads: H (D must divide by it).
        max_len: the most positions a sequence may have (sizes the position bias). Default: 256.
        max_attn_len: local window in positions, 0 = unlimited. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.
        pos_bias: learned relative-position bias. Default: True.
        time_bias: learned log time-gap bucket bias. Default: True.
        local_window: k, the most recent positions every query sees (sparse mixers). Default: 8.
        dilation: r, every r-th earlier position is also seen (sparse mixers). Default: 4.
    """

    name: str
    d_model: int
    num_heads: int
    max_len: int = 256
    max_attn_len: int = 0
    backend: str = "auto"
    pos_bias: bool = True
    time_bias: bool = True
    local_window: int = 8
    dilation: int = 4

    def validate(self) -> None:
        require(self.d_model > 0 and self.num_heads > 0, "d_model and num_heads must be positive")
        require(self.d_model % self.num_heads == 0, f"d_model {self.d_model} must divide by num_heads {self.num_heads}")
        require(self.max_len >= 1 and self.max_attn_len >= 0, "max_len >= 1 and max_attn_len >= 0")
        require(self.backend in BACKENDS, f"backend must be one of {BACKENDS}")
        require(self.local_window >= 0 and self.dilation >= 1, "local_window must be >= 0 and dilation >= 1")


class Mixer(nn.Module):
    """Base class: subclasses implement ``forward`` with this signature."""

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        raise NotImplementedError
