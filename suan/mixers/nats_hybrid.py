"""NAtS-L-style token-level hybrid: a learned router splits each token between a Gated DeltaNet state
(short-term) and a softmax-attention cache (long-term retrieval), both read in one layer.

Per head and token, ``r = sigmoid(w_r·x + b_r)`` (soft gating). The delta-rule branch writes the token
with strength ``β (1 - r)``; the softmax branch (``rel_attention``, with the SUAN position and time
biases) adds ``log r`` to the token's key score, so a key enters every softmax with weight ``r``. The
key bias is folded into the head dimension: ``q' = [q sqrt((D+1)/D), sqrt(D+1)]``, ``k' = [k, log r]``
gives ``q'·k' / sqrt(D+1) = q·k / sqrt(D) + log r``. Output: ``W_o(RMSNorm(o_delta) + o_softmax)``.

Incremental form (:class:`~suan.mixers.base.RecurrentMixer`): the delta-rule state is O(1) per token,
but the softmax part keeps every routed history token's key (with its ``log r``), value and timestamp,
so the state grows with the history (``state_grows = True``). Soft gating keeps all tokens; tokens with
a small ``r`` could be dropped from the cache at a threshold, which changes the outputs slightly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.mixers.gated_deltanet import decay_bias
from suan.ops import gated_delta_rule as gdr
from suan.ops.common.masks import TIME_BUCKETS, log_time_bucket
from suan.ops.common.precision import working_dtype
from suan.ops.rel_attention import rel_attention


class NAtSHybrid(Mixer):
    """Routed Gated DeltaNet + softmax attention with shared q, k, v projections.

    Args:
        cfg: :class:`MixerConfig`; ``pos_bias``/``time_bias``/``max_attn_len`` apply to the softmax branch.
    """

    state_grows = True

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.head_dim = cfg.d_model // cfg.num_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        # decay, write strength and router logits per head
        self.gates = nn.Linear(cfg.d_model, 3 * cfg.num_heads)
        with torch.no_grad():
            self.gates.bias[:cfg.num_heads] = decay_bias(cfg.num_heads)
        self.norm = nn.RMSNorm(self.head_dim)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if cfg.pos_bias else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if cfg.time_bias else None

    def _project(self, x: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """x [B, L, D] → delta-rule inputs (q, k, v [B, H, L, D/H], log α, β [B, H, L]) and softmax inputs
        (q', k' [B, H, L, D/H + 1], v)."""
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)
        a, b, r = rearrange(self.gates(x), "b l (t h) -> t b h l", t=3)
        beta = torch.sigmoid(b) * torch.sigmoid(-r)  # β (1 - r)
        delta = (F.normalize(q, dim=-1) * self.head_dim ** -0.5, F.normalize(k, dim=-1), v, -F.softplus(a), beta)
        d = self.head_dim
        q_aug = torch.cat([q * math.sqrt((d + 1) / d), torch.full_like(q[..., :1], math.sqrt(d + 1))], dim=-1)
        k_aug = torch.cat([k, F.logsigmoid(r).unsqueeze(-1)], dim=-1)  # log r in the extra channel
        return delta, (q_aug, k_aug, v)

    def _output(self, o_delta: Tensor, o_soft: Tensor) -> Tensor:
        """Both [B, H, L, D/H] → [B, L, D]."""
        return self.out(rearrange(self.norm(o_delta.to(o_soft.dtype)) + o_soft, "b h l d -> b l (h d)"))

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        delta, soft = self._project(x)
        o_delta = gdr.gated_delta_rule(*delta, lengths=lengths, num_targets=num_targets, backend=self.cfg.backend)
        o_soft = rel_attention(*soft, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                               pos_bias=self.pos_bias, time_bias=self.time_bias,
                               max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
        # a copy before merging heads, as in SoftmaxAttention (SDPA output strides vs the exporter's `view`)
        return self._output(o_delta, o_soft.clone(memory_format=torch.contiguous_format))

    def init_state(self, batch: int) -> dict[str, Tensor]:
        H, d, device, dtype = self.cfg.num_heads, self.head_dim, self.qkv.weight.device, self.qkv.weight.dtype
        return dict(**gdr.init_state(batch, H, d, d, device, working_dtype(self.qkv.weight)),
                    keys=torch.zeros(batch, H, 0, d + 1, dtype=dtype, device=device),
                    values=torch.zeros(batch, H, 0, d, dtype=dtype, device=device),
                    timestamps=torch.zeros(batch, 0, dtype=torch.int64, device=device))

    def _attend(self, soft: tuple[Tensor, ...], timestamps: Tensor, state: dict[str, Tensor]) -> Tensor:
        """Queries at position T (= cached tokens) over the cache plus their own key: [B, H, N, D/H]."""
        q, k, v = soft  # [B, H, N, D/H + 1] x 2, [B, H, N, D/H]
        T = state["keys"].shape[2]
        scores = torch.cat([q @ state["keys"].transpose(-1, -2), (q * k).sum(-1, keepdim=True)], -1)  # [B, H, N, T+1]
        # position gaps T - j to the cached keys, 0 to the own key: [T + 1]
        gap = torch.cat([torch.arange(T, 0, -1, device=q.device),
                         torch.zeros(1, dtype=torch.int64, device=q.device)])
        dt = torch.cat([timestamps.unsqueeze(-1) - state["timestamps"].unsqueeze(1),
                        torch.zeros_like(timestamps).unsqueeze(-1)], -1)  # [B, N, T+1]
        bias = torch.zeros_like(dt, dtype=scores.dtype)
        if self.pos_bias is not None:
            bias = bias + self.pos_bias[gap.clamp(max=self.pos_bias.shape[0] - 1)]
        if self.time_bias is not None:
            bias = bias + self.time_bias[log_time_bucket(dt)]
        scores = scores / math.sqrt(q.shape[-1]) + bias.unsqueeze(1)
        if self.cfg.max_attn_len > 0:
            scores = scores.masked_fill(gap >= self.cfg.max_attn_len, float("-inf"))  # own key has gap 0
        probs = torch.softmax(scores, dim=-1)
        return probs[..., :T] @ state["values"] + probs[..., T:] * v

    def step(self, x_t: Tensor, timestamp_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        delta, soft = self._project(x_t.unsqueeze(1))
        o_delta, new = gdr.step({"S": state["S"]}, *(t[:, :, 0] for t in delta))  # [B, H, D/H]
        o_soft = self._attend(soft, timestamp_t.unsqueeze(1), state)  # [B, H, 1, D/H]
        new.update(keys=torch.cat([state["keys"], soft[1]], 2), values=torch.cat([state["values"], soft[2]], 2),
                   timestamps=torch.cat([state["timestamps"], timestamp_t.unsqueeze(1)], 1))
        return self._output(o_delta.unsqueeze(2), o_soft)[:, 0], new

    def score_candidates(self, x_c: Tensor, timestamps_c: Tensor, state: dict[str, Tensor]) -> Tensor:
        delta, soft = self._project(x_c)
        return self._output(gdr.read({"S": state["S"]}, *delta), self._attend(soft, timestamps_c, state))
