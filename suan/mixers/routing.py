"""Routing Transformer attention: online k-means routes tokens; each attends causally within its cluster."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.masks import TIME_BUCKETS
from suan.ops.routing_attention import routing_attention, update_centroids

# exponential moving average of the k-means centres (the paper's 0.999)
CENTROID_DECAY = 0.999


class RoutingAttention(Mixer):
    """Causal, target-aware routing attention (Roy et al., 2021); biases shared by heads.

    The centroids are a buffer moved by an exponential moving average of the routed history keys in
    training mode only; in eval mode they are fixed, so outputs are deterministic.

    Args:
        cfg: :class:`MixerConfig`; ``num_blocks`` is the number of clusters C per head, ``local_window``
            the capacity w (the most recent same-cluster keys a query sees); ``pos_bias``/``time_bias``
            switch the learned biases.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        head_dim = cfg.d_model // cfg.num_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        centroids = F.normalize(torch.randn(cfg.num_heads, cfg.num_blocks, head_dim), dim=-1)  # [H, C, D/H]
        self.register_buffer("centroids", centroids)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)
        y = routing_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                              centroids=self.centroids, pos_bias=self.pos_bias, time_bias=self.time_bias,
                              capacity=self.cfg.local_window, max_attn_len=self.cfg.max_attn_len,
                              backend=self.cfg.backend)  # [B, H, L, D/H]
        if self.training:
            moved = update_centroids(self.centroids, k.detach(), lengths, num_targets, CENTROID_DECAY)
            self.centroids.copy_(moved)
        # an explicit copy before merging heads (see softmax_attn.py: the dynamo exporter and strides)
        y = rearrange(y, "b h l d -> b l h d").clone(memory_format=torch.contiguous_format)
        return self.out(rearrange(y, "b l h d -> b l (h d)"))
