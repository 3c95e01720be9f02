"""Causal linear attention with the ``elu + 1`` feature map, normalised (Katharopoulos et al., 2020).

``linear_attention`` is the one dispatch point: ``naive`` (the ``(S, z)`` recurrence token by token,
the ground truth) or ``torch`` (chunked parallel form: the fast CPU path and the ONNX export path).
``init_state``/``step``/``read`` are the O(1)-per-token recurrent form for incremental scoring.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.linear_attention import naive
from suan.ops.linear_attention import torch as torch_path
from suan.ops.linear_attention.naive import init_state, read, step

__all__ = ["init_state", "linear_attention", "read", "step"]


def linear_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, backend: str = "auto",
) -> Tensor:
    """``o_i = φ(q_i)ᵀ S_i / (φ(q_i)ᵀ z_i + eps)`` with ``S_i = Σ φ(k_j) v_jᵀ``, ``z_i = Σ φ(k_j)``, target-aware.

    For history token ``i`` the sums run over history tokens ``j <= i``; for a candidate over the whole
    history plus itself (never another candidate). ``φ(x) = elu(x) + 1``, ``eps = 1e-6``.

    Args:
        q, k: [B, H, L, Dk] (before the feature map).
        v: [B, H, L, Dv].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int for every row) candidates at the end of the valid tokens.
        backend: ``auto`` | ``naive`` | ``torch``. Default: ``auto``.

    Returns:
        [B, H, L, Dv], exactly zero at padded positions.
    """
    chosen = resolve(backend, v, has_triton=False)
    impl = naive.linear_attention if chosen == "naive" else torch_path.linear_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths))
