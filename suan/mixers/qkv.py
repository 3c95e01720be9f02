"""The frame shared by the biased softmax-family mixers: fused q/k/v in, heads merged and projected out.

Subclasses set the op in :meth:`BiasedQKVMixer.attend`; the learned position bias (``[max_len + 1]``, by
key-to-query gap) and log time-gap bucket bias (``[TIME_BUCKETS]``) are shared by the heads and passed
to it, so every such mixer has the same parameters and checkpoints load across them.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.masks import TIME_BUCKETS


class BiasedQKVMixer(Mixer):
    """``x [B, L, D]`` → q, k, v ``[B, H, L, D/H]`` → :meth:`attend` → ``[B, L, D]``."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        q, k, v = self.split_heads(self.qkv(x))  # each [B, H, L, D/H]
        return self.merge_heads(self.attend(q, k, v, lengths=lengths, num_targets=num_targets,
                                            timestamps=timestamps))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        """The op: q, k, v ``[B, H, L, D/H]`` → ``[B, H, L, D/H]``, zero at padded positions."""
        raise NotImplementedError

    def split_heads(self, qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, L, 3D]`` → three ``[B, H, L, D/H]``."""
        return rearrange(qkv, "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)

    def merge_heads(self, y: Tensor) -> Tensor:
        """``[B, H, L, D/H]`` → output projection of ``[B, L, D]``."""
        # an explicit copy before merging heads (see softmax_attn.py: the dynamo exporter and strides)
        y = rearrange(y, "b h l d -> b l h d").clone(memory_format=torch.contiguous_format)
        return self.out(rearrange(y, "b l h d -> b l (h d)"))
