"""HSTU mixer: pointwise SiLU attention with the relative bias, normalised, gated by U."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.masks import TIME_BUCKETS, valid_tokens
from suan.ops.hstu_attention import hstu_attention


class HSTUAttention(Mixer):
    """``out = W_o(LayerNorm(A(x) V) * U)`` with ``U, V, Q, K = split(SiLU(W x))`` (Zhai et al., 2024).

    Args:
        cfg: :class:`MixerConfig`.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.uvqk = nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        u, v, q, k = F.silu(self.uvqk(x)).chunk(4, dim=-1)  # 4 x [B, L, D]
        q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=self.cfg.num_heads) for t in (q, k, v))
        y = hstu_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                           pos_bias=self.pos_bias, time_bias=self.time_bias,
                           max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
        y = self.out(self.norm(rearrange(y, "b h l d -> b l (h d)").contiguous()) * u)  # [B, L, D]
        # the LayerNorm shift makes padded rows non-zero, and the mixer contract wants them zero
        return y * valid_tokens(lengths, x.shape[1]).unsqueeze(-1).to(y.dtype)
