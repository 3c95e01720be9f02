"""Aaren (Feng et al., 2024, "Attention as an RNN"): one learned query per head attends over each prefix.

``o_i = Σ_{j<=i} softmax_j(q·k_j / sqrt(D)) v_j`` for history tokens; a candidate reads the whole history
plus itself. Training runs the parallel cumsum form; serving can append history tokens one at a time to
an O(1) state ``(m, u, w)`` per head (:class:`~suan.mixers.base.RecurrentMixer`). The relative-position
and time biases, ``max_attn_len`` and ``timestamps`` are not used.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.aaren import aaren, init_state, read, step
from suan.ops.common.precision import working_dtype


class Aaren(Mixer):
    """Many-to-many Aaren layer: ``W_o(aaren(q·K, V))`` with a learned query ``q`` [H, D/H].

    Args:
        cfg: :class:`MixerConfig`.
    """

    state_grows = False

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.head_dim = cfg.d_model // cfg.num_heads
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model, bias=False)
        self.query = nn.Parameter(torch.randn(cfg.num_heads, self.head_dim))
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def _scores_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, L, D] → scores [B, H, L], values [B, H, L, D/H]."""
        k, v = rearrange(self.kv(x), "b l (t h d) -> t b h l d", t=2, h=self.cfg.num_heads)
        return torch.einsum("bhld,hd->bhl", k, self.query) * self.head_dim ** -0.5, v

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        s, v = self._scores_values(x)
        y = aaren(s, v, lengths=lengths, num_targets=num_targets, backend=self.cfg.backend)  # [B, H, L, D/H]
        return self.out(rearrange(y, "b h l d -> b l (h d)"))

    def init_state(self, batch: int) -> dict[str, Tensor]:
        return init_state(batch, self.cfg.num_heads, self.head_dim, self.query.device, working_dtype(self.query))

    def step(self, x_t: Tensor, timestamp_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        s, v = self._scores_values(x_t.unsqueeze(1))  # [B, H, 1], [B, H, 1, D/H]
        o, state = step(state, s[:, :, 0], v[:, :, 0])  # [B, H, D/H]
        return self.out(rearrange(o, "b h d -> b (h d)").to(x_t.dtype)), state

    def score_candidates(self, x_c: Tensor, timestamps_c: Tensor, state: dict[str, Tensor]) -> Tensor:
        s, v = self._scores_values(x_c)
        o = read(state, s, v)  # [B, H, N, D/H]
        return self.out(rearrange(o, "b h n d -> b n (h d)").to(x_c.dtype))
