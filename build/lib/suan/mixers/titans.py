"""Titans: causal softmax attention (short-term) read beside a linear neural memory updated at test time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.masks import TIME_BUCKETS
from suan.ops.rel_attention import rel_attention
from suan.ops.titans_memory import titans_memory


class TitansMemory(Mixer):
    """``out = W_o(attn(x) + sigmoid(W_g x) * memory(x))`` (Behrouz et al., 2024, memory as a gate).

    ``attn`` is SUAN's causal softmax attention with the relative biases; ``memory`` is a per-head linear
    memory ``M`` (initial value learned) written by one surprise-gradient step per token, with a learned
    data-dependent step size, momentum and decay, read with L2-normalised queries and keys (see
    ``suan.ops.titans_memory``). Both are target-aware.

    Args:
        cfg: :class:`MixerConfig`; ``pos_bias``/``time_bias`` switch the attention's learned biases.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        heads, head_dim = cfg.num_heads, cfg.d_model // cfg.num_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.memory_qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.step_size = nn.Linear(cfg.d_model, heads)
        self.gate = nn.Linear(cfg.d_model, cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.init_memory = nn.Parameter(torch.zeros(heads, head_dim, head_dim))
        # alpha = sigmoid(3) ≈ 0.95 (slow forgetting), rho = sigmoid(2) ≈ 0.88 (momentum eta ≈ 0.84)
        self.decay_logit = nn.Parameter(torch.full((heads,), 3.0))
        self.ratio_logit = nn.Parameter(torch.full((heads,), 2.0))
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        heads = self.cfg.num_heads
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=heads)
        attn = rel_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                             pos_bias=self.pos_bias, time_bias=self.time_bias,
                             max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
        mq, mk, mv = rearrange(self.memory_qkv(x), "b l (t h d) -> t b h l d", t=3, h=heads)
        step_size = rearrange(torch.sigmoid(self.step_size(x)), "b l h -> b h l")
        memory = titans_memory(F.normalize(mq, dim=-1), F.normalize(mk, dim=-1), mv, lengths=lengths,
                               num_targets=num_targets, lr=step_size, init=self.init_memory, log_decay=F.logsigmoid(self.decay_logit),
                               log_ratio=F.logsigmoid(self.ratio_logit), max_attn_len=self.cfg.max_attn_len,
                               backend=self.cfg.backend)  # [B, H, L, D/H]
        # an explicit copy before merging heads (see softmax_attn.py: the dynamo exporter and strides)
        attn, memory = (rearrange(t, "b h l d -> b l h d").clone(memory_format=torch.contiguous_format)
                        for t in (attn, memory))
        attn, memory = (rearrange(t, "b l h d -> b l (h d)") for t in (attn, memory))  # [B, L, D]
        return self.out(attn + torch.sigmoid(self.gate(x)) * memory)
