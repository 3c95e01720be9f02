"""Combiner: direct attention inside the local block, mean-pooled abstractions of every earlier block."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.combiner_attention import combiner_attention


class CombinerAttention(BiasedQKVMixer):
    """Causal, target-aware Combiner attention (Ren et al., 2021), full reach at O(L·(b + L/b)); biases shared.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` is the block size b (>= 1; ``b ≈ sqrt(L)`` gives
            O(L^1.5)); ``pos_bias``/``time_bias`` switch the learned biases.
    """

    # what the generic MixerConfig counts mean here (ModelConfig refuses a setting a mixer does not read)
    settings: ClassVar[dict[str, str]] = {"local_window": "block size b"}

    block_role = "the block size"

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        return combiner_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                                  pos_bias=self.pos_bias, time_bias=self.time_bias, block=self.cfg.local_window,
                                  max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
