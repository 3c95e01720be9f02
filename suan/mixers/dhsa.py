"""Dynamic Hierarchical Sparse Attention: session chunks, length-normalised chunk scores, best chunks kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from suan.mixers.base import MixerOptions
from suan.mixers.qkv import BiasedQKVMixer
from suan.ops.dhsa_attention import dhsa_attention, session_boundaries
from suan.utils.config import require

# a new chunk starts after 30 minutes without an event (the usual session split of behaviour logs)
SESSION_GAP_SECONDS = 1800


@dataclass(frozen=True, kw_only=True, slots=True)
class DHSAOptions(MixerOptions):
    """DHSA's chunks.

    Args:
        chunk: c, the longest chunk (>= 1); chunks also end at session breaks. Default: 8.
        chunks_kept: m, the chunks each query keeps (a budget of at most m·c tokens, >= 1). Default: 4.
    """

    chunk: int = 8
    chunks_kept: int = 4
    counts: ClassVar[dict[str, str]] = {"chunk": "local_window", "chunks_kept": "num_blocks"}

    def validate(self) -> None:
        require(self.chunk >= 1 and self.chunks_kept >= 1, "dhsa: chunk and chunks_kept must be >= 1")


class DHSAttention(BiasedQKVMixer):
    """Causal, target-aware DHSA (Xiong et al., 2025); biases shared by heads.

    The paper learns a boundary predictor with its own objective; a hard boundary gets no gradient from
    the attention loss, so here chunks end at session breaks (``SESSION_GAP_SECONDS``) and at least every
    ``chunk`` positions: variable-length chunks from the data, nothing to learn.

    Args:
        cfg: :class:`MixerConfig`; :class:`DHSAOptions` sets the longest chunk c and the chunks m each
            query keeps; ``pos_bias``/``time_bias`` switch the
            learned biases.
    """

    options: ClassVar[type[MixerOptions]] = DHSAOptions


    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
               timestamps: Tensor) -> Tensor:
        boundaries = session_boundaries(timestamps, lengths, num_targets, SESSION_GAP_SECONDS)  # [B, L]
        return dhsa_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                              boundaries=boundaries, pos_bias=self.pos_bias, time_bias=self.time_bias,
                              chunk=self.cfg.options.chunk, top_k=self.cfg.options.chunks_kept,
                              max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)  # [B, H, L, D/H]
