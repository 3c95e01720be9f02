"""Aaren, attention as an RNN (Feng et al., 2024): a learned query attends over each prefix.

``aaren`` is the one dispatch point: ``naive`` (the ``(m, u, w)`` recurrence token by token, the ground
truth) or ``torch`` (cumsums against a constant global max: the fast CPU path and the ONNX export path).
``init_state``/``step``/``read`` are the O(1)-per-token recurrent form for incremental scoring.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.aaren import naive
from suan.ops.aaren import torch as torch_path
from suan.ops.aaren.naive import SCORE_CAP, init_state, read, step
from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets

__all__ = ["SCORE_CAP", "aaren", "init_state", "read", "step"]


def aaren(s: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, backend: str = "auto") -> Tensor:
    """Many-to-many attention of one learned query per head over each prefix, target-aware.

    History token ``i`` gets ``sum_{j<=i} exp(c(s_j)) v_j / sum_{j<=i} exp(c(s_j))`` over history tokens;
    a candidate gets the same over the whole history plus itself (never another candidate). ``c`` is
    the soft cap ``SCORE_CAP * tanh(s / SCORE_CAP)``.

    Args:
        s: [B, H, L] raw scores of the learned query against each token's key.
        v: [B, H, L, D] values.
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int for every row) candidates at the end of the valid tokens.
        backend: ``auto`` | ``naive`` | ``torch``. Default: ``auto``.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    chosen = resolve(backend, v, has_triton=False)
    impl = naive.aaren if chosen == "naive" else torch_path.aaren
    return impl(s, v, lengths=lengths, num_targets=as_targets(num_targets, lengths))
