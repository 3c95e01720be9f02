"""Fast CPU path and ONNX export path: gather the ``b + h`` key slots of every query, softmax over them.

Cost O(B·H·L·(b + h)·D) instead of O(B·H·L²·D). Gathering per query (rather than HaloNet's block-wise
unfold) keeps candidates, which all sit at position ``n_hist``, in the same code path as history tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import positions, valid_tokens
from suan.ops.common.slots import gathered_attention, local_slots, pair_bias, take


def halo_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                   pos_bias: Tensor | None, time_bias: Tensor | None, block: int, halo: int,
                   max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    pos = positions(lengths, num_targets, L)  # [B, L]
    offsets = torch.arange(block + halo, device=q.device)  # [K], slot 0 = self
    key, valid = local_slots(pos, lengths, offsets, pos % block + halo, max_attn_len)  # [B, L, K]
    bias = pair_bias(offsets, timestamps.unsqueeze(-1) - take(timestamps, key), pos_bias, time_bias)
    out = gathered_attention(q, k, v, key.unsqueeze(1), valid.unsqueeze(1),
                             None if bias is None else bias.unsqueeze(1))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
