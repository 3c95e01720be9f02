"""Triton path: LightSUAN local + dilated softmax attention that visits only the attended keys.

Two launches of the shared kernels (``suan.ops.common.attention_triton``) per direction:

- the *local part*: contiguous query blocks over the key band ``[p - k, p]`` (plus each candidate's own
  token), i.e. ``(BLOCK + k) / BLOCK`` key blocks per query block instead of ``p / BLOCK``;
- the *dilated part*: the gaps ``s, s + r, …`` (``s`` the first multiple of r above k) keep the residue
  ``p mod r``, so a program takes BLOCK rows of one residue class (every r-th row, strided pointers) and
  attends them to the keys of the same class, a causal ``tl.dot`` on a strided sub-sequence. Candidates
  (position n_hist) use the keys of the class of n_hist. This part resumes the online softmax of the local
  part from its ``(out, lse)``, so the two parts form one softmax; in backward both parts use the final
  ``lse`` and ``delta`` and add into fp32 gradient buffers.

Cost ~ ``L·(k + L/r)·D`` per head, as the gather path of ``torch.py``, but with tensor-core tiles.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common import attention_triton as kernels
from suan.ops.common.attention_fn import parts_attention


def sparse_parts(local_window: int, dilation: int, max_attn_len: int, max_len: int) -> list[kernels.Part]:
    """The local part and, if any of its gaps can occur, the dilated part of the pattern.

    Args:
        local_window: k. dilation: r. max_attn_len: window (0 = none). max_len: L (largest gap is L - 1).
    """
    widest = max_attn_len - 1 if max_attn_len > 0 else max(max_len, 1)
    if dilation == 1:
        # every gap is attended: one dense part
        return [kernels.Part(0, widest)]
    local = kernels.Part(0, min(local_window, widest))
    start = (local_window // dilation + 1) * dilation
    if start > min(widest, max_len - 1):
        return [local]
    return [local, kernels.Part(start, widest, dilation, residue=True, self_term=False)]


def sparse_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                     pos_bias: Tensor | None, time_bias: Tensor | None, local_window: int, dilation: int,
                     max_attn_len: int) -> Tensor:
    """Padded entry point; see ``suan.ops.sparse_attention.sparse_attention``.

    Args:
        q, k, v: [B, H, L, D]. lengths, num_targets: [B]. timestamps: [B, L] int64.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    layout = kernels.Layout.from_padded(lengths, num_targets, timestamps)
    return parts_attention(q, k, v, layout, pos_bias, time_bias,
                           sparse_parts(local_window, dilation, max_attn_len, layout.max_len))


def sparse_attention_jagged(q: Tensor, k: Tensor, v: Tensor, *, offsets: Tensor, num_targets: Tensor,
                            timestamps: Tensor, max_len: int, local_window: int, dilation: int,
                            pos_bias: Tensor | None = None, time_bias: Tensor | None = None,
                            max_attn_len: int = 0) -> Tensor:
    """Jagged entry point (``[N, H, D]`` values + ``offsets`` [B + 1]); arguments as ``rel_attention_jagged``
    plus the pattern (``local_window`` k, ``dilation`` r).

    Returns:
        [N, H, D].
    """
    layout = kernels.Layout.from_jagged(offsets, num_targets, timestamps, max_len)
    return parts_attention(q, k, v, layout, pos_bias, time_bias,
                           sparse_parts(local_window, dilation, max_attn_len, layout.max_len))
