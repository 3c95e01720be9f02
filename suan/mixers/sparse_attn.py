"""LightSUAN sparse self-attention: local window + dilated stride, with the relative-position + time bias."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.masks import TIME_BUCKETS
from suan.ops.sparse_attention import sparse_attention


class SparseAttention(Mixer):
    """Causal, target-aware softmax attention over the ``local_window`` previous positions and every
    ``dilation``-th earlier one; biases are shared across heads.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` (k) and ``dilation`` (r) set the pattern,
            ``pos_bias``/``time_bias`` switch the learned biases.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)
        y = sparse_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                             pos_bias=self.pos_bias, time_bias=self.time_bias,
                             local_window=self.cfg.local_window, dilation=self.cfg.dilation,
                             max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
        # an explicit copy before merging heads: the dynamo ONNX exporter's passes may see the output with
        # different strides, drop a `.contiguous()` as a no-op in one and then fail the merging `view`
        y = rearrange(y, "b h l d -> b l h d").clone(memory_format=torch.contiguous_format)
        return self.out(rearrange(y, "b l h d -> b l (h d)"))
