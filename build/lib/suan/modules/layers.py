"""Small layers used by every model: SwiGLU feed-forward, Dice activation, MLP tower."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SwiGLU(nn.Module):
    """``W_o (SiLU(W_g x) * W_u x)`` with hidden width ``mult * d``.

    Args:
        d: model width D.
        mult: hidden width multiplier. Default: 3.
    """

    def __init__(self, d: int, mult: int = 3) -> None:
        super().__init__()
        self.gate = nn.Linear(d, mult * d, bias=False)
        self.up = nn.Linear(d, mult * d, bias=False)
        self.down = nn.Linear(mult * d, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Dice(nn.Module):
    """Dice activation (DIN): ``p(x) x + (1 - p(x)) alpha x`` with ``p = sigmoid(BN(x))``.

    Args:
        d: feature width.
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(d, affine=False, eps=1e-8)
        self.alpha = nn.Parameter(torch.zeros(d))

    def forward(self, x: Tensor) -> Tensor:
        p = torch.sigmoid(self.bn(x))
        return p * x + (1 - p) * self.alpha * x


class MLPHead(nn.Module):
    """BatchNorm → [Linear → BatchNorm → Dice] per hidden width → Linear(1).

    Args:
        d_in: input width.
        widths: hidden widths.
    """

    def __init__(self, d_in: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm1d(d_in)]
        prev = d_in
        for w in widths:
            layers += [nn.Linear(prev, w), Dice(w)]
            prev = w
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """[B, d_in] → [B] logits."""
        return self.net(x).squeeze(-1)
