"""TransNeXt aggregated attention: fine local window + pooled earlier blocks + learned key/value tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from suan.mixers.base import MixerConfig, MixerOptions
from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.aggregated_attention import aggregated_attention
from suan.utils.config import require


@dataclass(frozen=True, kw_only=True, slots=True)
class TransNeXtOptions(MixerOptions):
    """TransNeXt's windows and tokens.

    Args:
        window: w, both the fine window (previous positions) and the pooling block (>= 1). Default: 8.
        learned_tokens: learned key/value tokens per head (>= 1). Default: 4.
    """

    window: int = 8
    learned_tokens: int = 4
    counts: ClassVar[dict[str, str]] = {"window": "local_window", "learned_tokens": "num_blocks"}

    def validate(self) -> None:
        require(self.window >= 1 and self.learned_tokens >= 1, "transnext: window and learned_tokens must be >= 1")


class AggregatedAttention(BiasedQKVMixer):
    """Causal, target-aware TransNeXt aggregated attention (Shi, 2023); one softmax, biases shared by heads.

    Args:
        cfg: :class:`MixerConfig`; :class:`TransNeXtOptions` sets the window w (fine window and pooling
            block) and the learned key/value tokens per head;
            ``pos_bias``/``time_bias`` switch the learned biases.
    """

    options: ClassVar[type[MixerOptions]] = TransNeXtOptions


    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__(cfg)
        head_dim = cfg.d_model // cfg.num_heads
        self.learned_k = nn.Parameter(torch.randn(cfg.num_heads, cfg.options.learned_tokens, head_dim) * head_dim**-0.5)
        self.learned_v = nn.Parameter(torch.randn(cfg.num_heads, cfg.options.learned_tokens, head_dim) * head_dim**-0.5)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        return aggregated_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                                    pos_bias=self.pos_bias, time_bias=self.time_bias, window=self.cfg.options.window,
                                    pool=self.cfg.options.window, learned_k=self.learned_k, learned_v=self.learned_v,
                                    max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
