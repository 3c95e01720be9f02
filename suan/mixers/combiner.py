"""Combiner: direct attention inside the local block, mean-pooled abstractions of every earlier block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from suan.mixers.base import MixerOptions
from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.combiner_attention import combiner_attention
from suan.utils.config import require


@dataclass(frozen=True, kw_only=True, slots=True)
class CombinerOptions(MixerOptions):
    """Combiner's blocks.

    Args:
        block: b, the block size (>= 1; ``b ≈ sqrt(L)`` gives O(L^1.5)). Default: 8.
    """

    block: int = 8
    counts: ClassVar[dict[str, str]] = {"block": "local_window"}

    def validate(self) -> None:
        require(self.block >= 1, f"combiner: block must be >= 1, got {self.block}")


class CombinerAttention(BiasedQKVMixer):
    """Causal, target-aware Combiner attention (Ren et al., 2021), full reach at O(L·(b + L/b)); biases shared.

    Args:
        cfg: :class:`MixerConfig`; :class:`CombinerOptions` sets the block size b; ``pos_bias``/``time_bias`` switch the learned biases.
    """

    options: ClassVar[type[MixerOptions]] = CombinerOptions


    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        return combiner_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                                  pos_bias=self.pos_bias, time_bias=self.time_bias, block=self.cfg.options.block,
                                  max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
