"""TransNeXt aggregated attention: a fine local window, pooled coarse keys of earlier blocks and a few learned
key/value tokens, in one softmax.

``aggregated_attention`` is the one dispatch point: ``naive`` (dense mask over tokens, block summaries and
learned tokens, the ground truth) or ``torch`` (gather of ``w + 1 + ceil(L / b) + m`` slots per query: the
fast CPU path and the ONNX path).
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.aggregated_attention import naive
from suan.ops.aggregated_attention import torch as torch_path
from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets

__all__ = ["aggregated_attention"]


def aggregated_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, timestamps: Tensor,
    pos_bias: Tensor | None = None, time_bias: Tensor | None = None, window: int, pool: int,
    learned_k: Tensor | None = None, learned_v: Tensor | None = None, max_attn_len: int = 0,
    backend: str = "auto",
) -> Tensor:
    """Target-aware causal aggregated attention (Shi, 2023, "TransNeXt", pixel-focused + pooled + learned).

    A query at position ``p`` (history ``i``: ``p = i``; every candidate: ``p = n_hist``) attends in one
    softmax to: itself and the history tokens at gaps ``1..w`` (fine window), the mean-pooled key/value of
    every block of ``b`` positions wholly before its own block (``c < p // b``: causal pooling, biases at the
    block's last token), and ``m`` learned key/value tokens (no bias; they depend on no token).

    Args:
        q, k, v: [B, H, L, D].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int) candidates at the end of the valid tokens.
        timestamps: [B, L] int64.
        pos_bias: [P] bias over position gaps (clamped to P - 1), shared by heads. Default: None.
        time_bias: [128] bias per log time-gap bucket, shared by heads. Default: None.
        window: w >= 0, previous positions of the fine window.
        pool: b >= 1, positions per pooled block.
        learned_k, learned_v: [H, m, D] learned tokens, or both None. Default: None.
        max_attn_len: if > 0, only tokens less than this many positions back, and only blocks whose
            first position is. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    if window < 0 or pool < 1:
        raise ValueError(f"need window >= 0 and pool >= 1, got {window} and {pool}")
    if (learned_k is None) != (learned_v is None):
        raise ValueError("learned_k and learned_v must both be given or both be None")
    chosen = resolve(backend, q, has_triton=False)
    impl = naive.aggregated_attention if chosen == "naive" else torch_path.aggregated_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                pos_bias=pos_bias, time_bias=time_bias, window=window, pool=pool, learned_k=learned_k,
                learned_v=learned_v, max_attn_len=max_attn_len)
