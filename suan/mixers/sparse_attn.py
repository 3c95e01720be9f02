"""LightSUAN sparse self-attention: local window + dilated stride, with the relative-position + time bias.

The options of :class:`~suan.mixers.softmax_attn.SoftmaxAttention` (position, sink calibration,
ablations, recording) apply unchanged; only the mask and the fast op differ.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from suan.mixers.softmax_attn import SoftmaxAttention
from suan.ops.sparse_attention import sparse_attention, sparse_attention_mask


class SparseAttention(SoftmaxAttention):
    """Causal, target-aware softmax attention over the ``local_window`` previous positions and every
    ``dilation``-th earlier one; biases are shared across heads.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` (k) and ``dilation`` (r) set the pattern,
            ``pos_bias``/``time_bias`` switch the learned biases.
    """

    # what the generic MixerConfig counts mean here (ModelConfig refuses a setting a mixer does not read)
    settings: ClassVar[dict[str, str]] = {"local_window": "recent positions k", "dilation": "every r-th earlier position"}

    def key_mask(self, lengths: Tensor, num_targets: Tensor, seq_len: int) -> Tensor:
        return sparse_attention_mask(lengths, num_targets, seq_len, self.cfg.local_window, self.cfg.dilation,
                                     self.cfg.max_attn_len)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, num_targets: Tensor,
                timestamps: Tensor) -> Tensor:
        return sparse_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                                pos_bias=self.pos_bias, time_bias=self.time_bias,
                                local_window=self.cfg.local_window, dilation=self.cfg.dilation,
                                max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)
