"""TransNeXt aggregated attention: fine local window + pooled earlier blocks + learned key/value tokens."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from suan.mixers.base import MixerConfig
from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.aggregated_attention import aggregated_attention


class AggregatedAttention(BiasedQKVMixer):
    """Causal, target-aware TransNeXt aggregated attention (Shi, 2023); one softmax, biases shared by heads.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` is both the fine window w (previous positions) and the
            pooling block b (>= 1), ``num_blocks`` the learned key/value tokens per head;
            ``pos_bias``/``time_bias`` switch the learned biases.
    """

    # what the generic MixerConfig counts mean here (ModelConfig refuses a setting a mixer does not read)
    settings: ClassVar[dict[str, str]] = {"local_window": "fine window w and pooling block b", "num_blocks": "learned key/value tokens per head"}

    block_role = "window and pool size"

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__(cfg)
        head_dim = cfg.d_model // cfg.num_heads
        self.learned_k = nn.Parameter(torch.randn(cfg.num_heads, cfg.num_blocks, head_dim) * head_dim**-0.5)
        self.learned_v = nn.Parameter(torch.randn(cfg.num_heads, cfg.num_blocks, head_dim) * head_dim**-0.5)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        return aggregated_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                                    pos_bias=self.pos_bias, time_bias=self.time_bias, window=self.cfg.local_window,
                                    pool=self.cfg.local_window, learned_k=self.learned_k, learned_v=self.learned_v,
                                    max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
