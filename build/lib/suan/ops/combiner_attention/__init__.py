"""Combiner: direct attention inside the local block, mean-pooled abstractions of earlier blocks, one softmax.

``combiner_attention`` is the one dispatch point: ``naive`` (dense mask over the L tokens and the block
summaries, the ground truth) or ``torch`` (gather of ``b + ceil(L / b)`` slots per query: the fast CPU path
and the ONNX path).
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.combiner_attention import naive
from suan.ops.combiner_attention import torch as torch_path
from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets

__all__ = ["combiner_attention"]


def combiner_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, timestamps: Tensor,
    pos_bias: Tensor | None = None, time_bias: Tensor | None = None, block: int, max_attn_len: int = 0,
    backend: str = "auto",
) -> Tensor:
    """Target-aware causal Combiner attention (Ren et al., 2021, "Combiner", fixed-block factorisation).

    A query at position ``p`` (history ``i``: ``p = i``; every candidate: ``p = n_hist``) in block
    ``c = p // b`` attends, in one softmax, to itself, to the history tokens ``c·b <= j < p`` directly and
    to every earlier block ``c' < c`` through its abstraction: key and value = mean over the block's b
    tokens, score ``q·k̄ / sqrt(D) + ln(b)`` (the block stands for b tokens of that score: uniform
    attention inside the block) plus the biases at the block's last token. Every earlier position is
    reachable; cost O(L·(b + L/b)).

    Args:
        q, k, v: [B, H, L, D].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int) candidates at the end of the valid tokens.
        timestamps: [B, L] int64.
        pos_bias: [P] bias over position gaps (clamped to P - 1), shared by heads. Default: None.
        time_bias: [128] bias per log time-gap bucket, shared by heads. Default: None.
        block: b >= 1.
        max_attn_len: if > 0, only tokens less than this many positions back, and only blocks whose
            first position is. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    if block < 1:
        raise ValueError(f"need block >= 1, got {block}")
    chosen = resolve(backend, q, has_triton=False)
    impl = naive.combiner_attention if chosen == "naive" else torch_path.combiner_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                pos_bias=pos_bias, time_bias=time_bias, block=block, max_attn_len=max_attn_len)
