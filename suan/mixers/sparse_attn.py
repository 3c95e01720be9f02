"""LightSUAN sparse self-attention: local window + dilated stride, with the relative-position + time bias.

The options of :class:`~suan.mixers.softmax_attn.SoftmaxAttention` (position, sink calibration,
ablations, recording) apply unchanged; only the mask and the fast op differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from suan.mixers.base import MixerOptions
from suan.mixers.softmax_attn import SoftmaxAttention
from suan.ops.sparse_attention import sparse_attention, sparse_attention_mask
from suan.utils.config import require


@dataclass(frozen=True, kw_only=True, slots=True)
class SparseOptions(MixerOptions):
    """LightSUAN's pattern.

    Args:
        window: k, the most recent positions every query sees (>= 0). Default: 8.
        dilation: r, every r-th earlier position is also seen (>= 1). Default: 4.
    """

    window: int = 8
    dilation: int = 4
    counts: ClassVar[dict[str, str]] = {"window": "local_window", "dilation": "dilation"}

    def validate(self) -> None:
        require(self.window >= 0 and self.dilation >= 1, "sparse: window must be >= 0 and dilation >= 1")


class SparseAttention(SoftmaxAttention):
    """Causal, target-aware softmax attention over the ``window`` previous positions and every
    ``dilation``-th earlier one; biases are shared across heads.

    Args:
        cfg: :class:`MixerConfig`; its :class:`SparseOptions` set the pattern, ``pos_bias``/``time_bias``
            switch the learned biases.
    """

    options: ClassVar[type[MixerOptions]] = SparseOptions

    def key_mask(self, lengths: Tensor, num_targets: Tensor, seq_len: int) -> Tensor:
        return sparse_attention_mask(lengths, num_targets, seq_len, self.cfg.options.window, self.cfg.options.dilation,
                                     self.cfg.max_attn_len)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, num_targets: Tensor,
                timestamps: Tensor) -> Tensor:
        return sparse_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                                pos_bias=self.pos_bias, time_bias=self.time_bias,
                                local_window=self.cfg.options.window, dilation=self.cfg.options.dilation,
                                max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)
