"""HaloNet blocked local attention: blocks of ``b`` queries see their block plus ``h`` earlier positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from suan.mixers.base import MixerOptions
from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.halo_attention import halo_attention
from suan.utils.config import require


@dataclass(frozen=True, kw_only=True, slots=True)
class HaloOptions(MixerOptions):
    """HaloNet's blocks.

    Args:
        block: b, the queries of one block (>= 1); each also sees ``b // 2`` earlier positions (the halo).
            Default: 8.
    """

    block: int = 8
    counts: ClassVar[dict[str, str]] = {"block": "local_window"}

    def validate(self) -> None:
        require(self.block >= 1, f"halonet: block must be >= 1, got {self.block}")


class HaloAttention(BiasedQKVMixer):
    """Causal, target-aware blocked local attention with a halo (Vaswani et al., 2021); biases shared by heads.

    Args:
        cfg: :class:`MixerConfig`; :class:`HaloOptions` sets the block size b, the halo is ``b // 2``
            earlier positions; ``pos_bias``/``time_bias`` switch the learned biases.
    """

    options: ClassVar[type[MixerOptions]] = HaloOptions


    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        block = self.cfg.options.block
        return halo_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                              pos_bias=self.pos_bias, time_bias=self.time_bias, block=block, halo=block // 2,
                              max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
