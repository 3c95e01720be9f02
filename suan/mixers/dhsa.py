"""Dynamic Hierarchical Sparse Attention: session chunks, length-normalised chunk scores, best chunks kept."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.dhsa_attention import dhsa_attention, session_boundaries

# a new chunk starts after 30 minutes without an event (the usual session split of behaviour logs)
SESSION_GAP_SECONDS = 1800


class DHSAttention(BiasedQKVMixer):
    """Causal, target-aware DHSA (Xiong et al., 2025); biases shared by heads.

    The paper learns a boundary predictor with its own objective; a hard boundary gets no gradient from
    the attention loss, so here chunks end at session breaks (``SESSION_GAP_SECONDS``) and at least every
    ``local_window`` positions: variable-length chunks from the data, nothing to learn.

    Args:
        cfg: :class:`MixerConfig`; ``local_window`` is the longest chunk c (>= 1), ``num_blocks`` the chunks
            m each query keeps (a budget of at most m·c tokens); ``pos_bias``/``time_bias`` switch the
            learned biases.
    """

    # what the generic MixerConfig counts mean here (ModelConfig refuses a setting a mixer does not read)
    settings: ClassVar[dict[str, str]] = {"local_window": "longest session chunk c", "num_blocks": "chunks kept"}

    block_role = "the longest chunk"

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        boundaries = session_boundaries(timestamps, lengths, num_targets, SESSION_GAP_SECONDS)  # [B, L]
        return dhsa_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                              boundaries=boundaries, pos_bias=self.pos_bias, time_bias=self.time_bias,
                              chunk=self.cfg.local_window, top_k=self.cfg.num_blocks,
                              max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
