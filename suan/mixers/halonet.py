"""HaloNet blocked local attention: blocks of ``b`` queries see their block plus ``h`` earlier positions."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.halo_attention import halo_attention


class HaloAttention(BiasedQKVMixer):
    """Causal, target-aware blocked local attention with a halo (Vaswani et al., 2021); biases shared by heads.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` is the block size b (>= 1), the halo is ``b // 2``
            earlier positions; ``pos_bias``/``time_bias`` switch the learned biases.
    """

    # what the generic MixerConfig counts mean here (ModelConfig refuses a setting a mixer does not read)
    settings: ClassVar[dict[str, str]] = {"local_window": "block size b (halo b // 2)"}

    block_role = "the block size"

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        block = self.cfg.local_window
        return halo_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                              pos_bias=self.pos_bias, time_bias=self.time_bias, block=block, halo=block // 2,
                              max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
