"""Superlinear span-search attention (N = 2): score span summaries, attend to the top-k spans + local span."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.masks import TIME_BUCKETS
from suan.ops.span_attention import span_attention


class SpanSearchAttention(Mixer):
    """Causal, target-aware span-search attention, O(L^1.5) for ``s ≈ k ≈ sqrt(L)``; biases shared by heads.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` is the span size s (>= 1), ``num_blocks`` the spans k
            each query keeps; ``pos_bias``/``time_bias`` switch the learned biases.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        if cfg.local_window < 1:
            raise ValueError(f"span_search needs local_window (the span size) >= 1, got {cfg.local_window}")
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)
        y = span_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                           pos_bias=self.pos_bias, time_bias=self.time_bias, span=self.cfg.local_window,
                           top_k=self.cfg.num_blocks, max_attn_len=self.cfg.max_attn_len,
                           backend=self.cfg.backend)  # [B, H, L, D/H]
        # an explicit copy before merging heads (see softmax_attn.py: the dynamo exporter and strides)
        y = rearrange(y, "b h l d -> b l h d").clone(memory_format=torch.contiguous_format)
        return self.out(rearrange(y, "b l h d -> b l (h d)"))
