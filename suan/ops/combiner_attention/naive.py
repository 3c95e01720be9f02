"""Reference: dense mask and bias over the L tokens plus the ceil(L / b) block summaries (at least fp32 math)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from suan.ops.common.masks import positions, relative_bias, valid_tokens
from suan.ops.common.precision import at_least_fp32
from suan.ops.common.slots import dense_attention, dense_block_means, pair_bias
from suan.ops.halo_attention import halo_mask


def combiner_mask(lengths: Tensor, num_targets: Tensor, seq_len: int, block: int,
                  max_attn_len: int = 0) -> tuple[Tensor, Tensor]:
    """Which tokens and which block summaries every query attends to.

    Returns:
        ([B, L, L] bool tokens: own block so far + self, [B, L, nb] bool summaries: blocks ``c' < p // b``).
    """
    tokens = halo_mask(lengths, num_targets, seq_len, block, 0, max_attn_len)  # [B, L, L]
    pos = positions(lengths, num_targets, seq_len).unsqueeze(-1)  # [B, L, 1]
    c = torch.arange(-(-seq_len // block), device=lengths.device)  # [nb]
    blocks = (c < pos // block) & valid_tokens(lengths, seq_len).unsqueeze(-1)  # [B, L, nb]
    if max_attn_len > 0:
        blocks = blocks & (pos - c * block < max_attn_len)
    return tokens, blocks


def dense_summary_bias(lengths: Tensor, num_targets: Tensor, timestamps: Tensor, block: int, num_blocks: int,
                       pos_bias: Tensor | None, time_bias: Tensor | None) -> Tensor:
    """Bias of every block summary for every query: the pair bias at the block's last token.

    Returns:
        [B, L, nb] fp32 (zero without tables).
    """
    L = timestamps.shape[1]
    pos = positions(lengths, num_targets, L)  # [B, L]
    last = (torch.arange(num_blocks, device=pos.device) + 1) * block - 1  # [nb] last position of a block
    t_last = timestamps[:, last.clamp(max=max(L - 1, 0))]  # [B, nb]
    dt = timestamps.unsqueeze(-1) - t_last.unsqueeze(1)  # [B, L, nb]
    bias = pair_bias(pos.unsqueeze(-1) - last, dt, pos_bias, time_bias)
    return torch.zeros(pos.shape + (num_blocks,), device=pos.device) if bias is None else bias


def combiner_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
                       timestamps: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None, block: int,
                       max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    n_hist = lengths - num_targets
    k_sum, v_sum = dense_block_means(k, n_hist, block), dense_block_means(v, n_hist, block)  # [B, H, nb, D]
    tokens, blocks = combiner_mask(lengths, num_targets, L, block, max_attn_len)
    nb = blocks.shape[-1]
    summary_bias = dense_summary_bias(lengths, num_targets, timestamps, block, nb, pos_bias, time_bias)
    token_bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)  # [B, L, L] or None
    token_bias = torch.zeros(B, L, L, device=q.device) if token_bias is None else at_least_fp32(token_bias)
    bias = torch.cat([token_bias, summary_bias + math.log(block)], dim=-1).unsqueeze(1)  # [B, 1, L, L + nb]
    allowed = torch.cat([tokens, blocks], dim=-1).unsqueeze(1)  # [B, 1, L, L + nb]
    keys, values = torch.cat([at_least_fp32(k), k_sum], 2), torch.cat([at_least_fp32(v), v_sum], 2)  # [B, H, L + nb, D]
    out = dense_attention(q, keys, values, allowed, bias)
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
