"""Routing Transformer attention: online k-means routes tokens; each attends causally within its cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from suan.mixers.base import MixerConfig, MixerOptions
from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.routing_attention import routing_attention, update_centroids
from suan.utils.config import require

# exponential moving average of the k-means centres (the paper's 0.999)
CENTROID_DECAY = 0.999


@dataclass(frozen=True, kw_only=True, slots=True)
class RoutingOptions(MixerOptions):
    """Routing's clusters.

    Args:
        clusters: C, k-means clusters per head (>= 1). Default: 4.
        capacity: w, the most recent same-cluster keys a query sees (>= 0). Default: 8.
    """

    clusters: int = 4
    capacity: int = 8
    counts: ClassVar[dict[str, str]] = {"clusters": "num_blocks", "capacity": "local_window"}

    def validate(self) -> None:
        require(self.clusters >= 1 and self.capacity >= 0, "routing: clusters must be >= 1 and capacity >= 0")


class RoutingAttention(BiasedQKVMixer):
    """Causal, target-aware routing attention (Roy et al., 2021); biases shared by heads.

    The centroids are a buffer moved by an exponential moving average of the routed history keys in
    training mode only; in eval mode they are fixed, so outputs are deterministic.

    Args:
        cfg: :class:`MixerConfig`; :class:`RoutingOptions` sets the clusters C per head and the capacity w
            (the most recent same-cluster keys a query sees); ``pos_bias``/``time_bias``
            switch the learned biases.
    """

    options: ClassVar[type[MixerOptions]] = RoutingOptions

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__(cfg)
        head_dim = cfg.d_model // cfg.num_heads
        centroids = F.normalize(torch.randn(cfg.num_heads, cfg.options.clusters, head_dim), dim=-1)  # [H, C, D/H]
        self.register_buffer("centroids", centroids)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        y = routing_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                              centroids=self.centroids, pos_bias=self.pos_bias, time_bias=self.time_bias,
                              capacity=self.cfg.options.capacity, max_attn_len=self.cfg.max_attn_len,
                              backend=self.cfg.backend)  # [B, H, L, D/H]
        if self.training:
            moved = update_centroids(self.centroids, k.detach(), lengths, num_targets, CENTROID_DECAY)
            self.centroids.copy_(moved)
        return y
