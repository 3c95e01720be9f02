"""TransNeXt aggregated attention: fine local window + pooled earlier blocks + learned key/value tokens."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.aggregated_attention import aggregated_attention
from suan.ops.common.masks import TIME_BUCKETS


class AggregatedAttention(Mixer):
    """Causal, target-aware TransNeXt aggregated attention (Shi, 2023); one softmax, biases shared by heads.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` is both the fine window w (previous positions) and the
            pooling block b (>= 1), ``num_blocks`` the learned key/value tokens per head;
            ``pos_bias``/``time_bias`` switch the learned biases.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        if cfg.local_window < 1:
            raise ValueError(f"transnext needs local_window (window and pool size) >= 1, got {cfg.local_window}")
        self.cfg = cfg
        head_dim = cfg.d_model // cfg.num_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.learned_k = nn.Parameter(torch.randn(cfg.num_heads, cfg.num_blocks, head_dim) * head_dim**-0.5)
        self.learned_v = nn.Parameter(torch.randn(cfg.num_heads, cfg.num_blocks, head_dim) * head_dim**-0.5)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)
        y = aggregated_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                                 pos_bias=self.pos_bias, time_bias=self.time_bias, window=self.cfg.local_window,
                                 pool=self.cfg.local_window, learned_k=self.learned_k, learned_v=self.learned_v,
                                 max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
        # an explicit copy before merging heads (see softmax_attn.py: the dynamo exporter and strides)
        y = rearrange(y, "b h l d -> b l h d").clone(memory_format=torch.contiguous_format)
        return self.out(rearrange(y, "b l h d -> b l (h d)"))
