"""Superlinear span-search attention (N = 2): score span summaries, attend to the top-k spans + local span."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from suan.mixers.base import MixerOptions
from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.span_attention import span_attention
from suan.utils.config import require


@dataclass(frozen=True, kw_only=True, slots=True)
class SpanSearchOptions(MixerOptions):
    """The span search's spans.

    Args:
        span: s, positions per span (>= 1). Default: 8.
        spans_kept: k, the top-scoring spans each query attends to (>= 1). Default: 4.
    """

    span: int = 8
    spans_kept: int = 4
    counts: ClassVar[dict[str, str]] = {"span": "local_window", "spans_kept": "num_blocks"}

    def validate(self) -> None:
        require(self.span >= 1 and self.spans_kept >= 1, "span_search: span and spans_kept must be >= 1")


class SpanSearchAttention(BiasedQKVMixer):
    """Causal, target-aware span-search attention, O(L^1.5) for ``s ≈ k ≈ sqrt(L)``; biases shared by heads.

    Args:
        cfg: :class:`MixerConfig`; :class:`SpanSearchOptions` sets the span size s and the spans k each
            query keeps; ``pos_bias``/``time_bias`` switch the learned biases.
    """

    options: ClassVar[type[MixerOptions]] = SpanSearchOptions


    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        return span_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                              pos_bias=self.pos_bias, time_bias=self.time_bias, span=self.cfg.options.span,
                              top_k=self.cfg.options.spans_kept, max_attn_len=self.cfg.max_attn_len,
                              backend=self.cfg.backend)  # [B, H, L, D/H]
