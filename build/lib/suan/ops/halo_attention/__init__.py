"""HaloNet blocked local attention: queries in blocks of ``b`` attend to their block plus a halo of ``h``.

``halo_attention`` is the one dispatch point: ``naive`` (dense mask, explicit matmul-softmax, the ground
truth) or ``torch`` (gather of the ``b + h`` key slots per query: the fast CPU path and the ONNX path).
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.halo_attention import naive
from suan.ops.halo_attention import torch as torch_path
from suan.ops.halo_attention.naive import halo_mask

__all__ = ["halo_attention", "halo_mask"]


def halo_attention(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, timestamps: Tensor,
    pos_bias: Tensor | None = None, time_bias: Tensor | None = None, block: int, halo: int,
    max_attn_len: int = 0, backend: str = "auto",
) -> Tensor:
    """Target-aware causal blocked local attention (Vaswani et al., 2021, "HaloNet", made causal).

    A query at position ``p`` (history token ``i``: ``p = i``; every candidate: ``p = n_hist``) lies in
    block ``p // b`` and attends to itself and to the history keys at positions ``j`` with
    ``(p // b)·b - h <= j < p``, i.e. gaps ``1 <= p - j <= p % b + h``, with the biases of ``rel_attention``.

    Args:
        q, k, v: [B, H, L, D].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int) candidates at the end of the valid tokens.
        timestamps: [B, L] int64.
        pos_bias: [P] bias over position gaps (clamped to P - 1), shared by heads. Default: None.
        time_bias: [128] bias per log time-gap bucket, shared by heads. Default: None.
        block: b >= 1, query block size.
        halo: h >= 0, earlier positions before the block every query of the block also sees.
        max_attn_len: if > 0, additionally only gaps below it. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    if block < 1 or halo < 0:
        raise ValueError(f"need block >= 1 and halo >= 0, got {block} and {halo}")
    chosen = resolve(backend, q, has_triton=False)
    impl = naive.halo_attention if chosen == "naive" else torch_path.halo_attention
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), timestamps=timestamps,
                pos_bias=pos_bias, time_bias=time_bias, block=block, halo=halo, max_attn_len=max_attn_len)
