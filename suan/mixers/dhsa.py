"""Dynamic Hierarchical Sparse Attention: session chunks, length-normalised chunk scores, best chunks kept."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.masks import TIME_BUCKETS
from suan.ops.dhsa_attention import dhsa_attention, session_boundaries

# a new chunk starts after 30 minutes without an event (the usual session split of behaviour logs)
SESSION_GAP_SECONDS = 1800


class DHSAttention(Mixer):
    """Causal, target-aware DHSA (Xiong et al., 2025); biases shared by heads.

    The paper learns a boundary predictor with its own objective; a hard boundary gets no gradient from
    the attention loss, so here chunks end at session breaks (``SESSION_GAP_SECONDS``) and at least every
    ``local_window`` positions: variable-length chunks from the data, nothing to learn.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` is the longest chunk c (>= 1), ``num_blocks`` the chunks
            m each query keeps (a budget of at most m·c tokens); ``pos_bias``/``time_bias`` switch the
            learned biases.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        if cfg.local_window < 1:
            raise ValueError(f"dhsa needs local_window (the longest chunk) >= 1, got {cfg.local_window}")
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)
        boundaries = session_boundaries(timestamps, lengths, num_targets, SESSION_GAP_SECONDS)  # [B, L]
        y = dhsa_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                           boundaries=boundaries, pos_bias=self.pos_bias, time_bias=self.time_bias,
                           chunk=self.cfg.local_window, top_k=self.cfg.num_blocks,
                           max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
        # an explicit copy before merging heads (see softmax_attn.py: the dynamo exporter and strides)
        y = rearrange(y, "b h l d -> b l h d").clone(memory_format=torch.contiguous_format)
        return self.out(rearrange(y, "b l h d -> b l (h d)"))
