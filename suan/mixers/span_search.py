"""Superlinear span-search attention (N = 2): score span summaries, attend to the top-k spans + local span."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.span_attention import span_attention


class SpanSearchAttention(BiasedQKVMixer):
    """Causal, target-aware span-search attention, O(L^1.5) for ``s ≈ k ≈ sqrt(L)``; biases shared by heads.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` is the span size s (>= 1), ``num_blocks`` the spans k
            each query keeps; ``pos_bias``/``time_bias`` switch the learned biases.
    """

    # what the generic MixerConfig counts mean here (ModelConfig refuses a setting a mixer does not read)
    settings: ClassVar[dict[str, str]] = {"local_window": "span size s", "num_blocks": "spans kept k"}

    block_role = "the span size"

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        return span_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                              pos_bias=self.pos_bias, time_bias=self.time_bias, span=self.cfg.local_window,
                              top_k=self.cfg.num_blocks, max_attn_len=self.cfg.max_attn_len,
                              backend=self.cfg.backend)  # [B, H, L, D/H]
