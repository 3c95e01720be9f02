"""HaloNet blocked local attention: blocks of ``b`` queries see their block plus ``h`` earlier positions."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.masks import TIME_BUCKETS
from suan.ops.halo_attention import halo_attention


class HaloAttention(Mixer):
    """Causal, target-aware blocked local attention with a halo (Vaswani et al., 2021); biases shared by heads.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` is the block size b (>= 1), the halo is ``b // 2``
            earlier positions; ``pos_bias``/``time_bias`` switch the learned biases.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        if cfg.local_window < 1:
            raise ValueError(f"halonet needs local_window (the block size) >= 1, got {cfg.local_window}")
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)
        block = self.cfg.local_window
        y = halo_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                           pos_bias=self.pos_bias, time_bias=self.time_bias, block=block, halo=block // 2,
                           max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
        # an explicit copy before merging heads (see softmax_attn.py: the dynamo exporter and strides)
        y = rearrange(y, "b h l d -> b l h d").clone(memory_format=torch.contiguous_format)
        return self.out(rearrange(y, "b l h d -> b l (h d)"))
