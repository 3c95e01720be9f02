"""HSTU pointwise attention: ``SiLU(q·k + bias) / n`` on the same target-aware masks.

One dispatch point; the ``torch`` path is the vectorised reference until a Triton kernel exists.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.hstu_attention import naive


def hstu_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
    pos_bias: Tensor | None = None, time_bias: Tensor | None = None, max_attn_len: int = 0,
    backend: str = "auto",
) -> Tensor:
    """Pointwise (non-softmax) attention of HSTU.

    Args:
        q, k, v: [B, H, L, D].
        lengths, num_targets, timestamps, pos_bias, time_bias, max_attn_len: as in ``rel_attention``.
        backend: ``auto`` | ``naive`` | ``torch``. Default: ``auto``.

    Returns:
        [B, H, L, D]: ``sum_j SiLU(s_ij) v_j / (n_hist + 1)`` over allowed keys.
    """
    resolve(backend, q, has_triton=False)
    return naive.hstu_attention(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                                pos_bias=pos_bias, time_bias=time_bias, max_attn_len=max_attn_len)
