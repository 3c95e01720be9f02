"""Reference: dense mask and bias over the L tokens, the ceil(L / b) block summaries and the m learned tokens."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.combiner_attention.naive import combiner_mask, dense_summary_bias
from suan.ops.common.masks import relative_bias, valid_tokens
from suan.ops.common.precision import at_least_fp32
from suan.ops.common.slots import dense_attention, dense_block_means
from suan.ops.halo_attention import halo_mask


def aggregated_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
                         timestamps: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None, window: int,
                         pool: int, learned_k: Tensor | None, learned_v: Tensor | None,
                         max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    n_hist = lengths - num_targets
    # a window of w previous positions is a halo of w around blocks of one position
    tokens = halo_mask(lengths, num_targets, L, 1, window, max_attn_len)  # [B, L, L]
    _, blocks = combiner_mask(lengths, num_targets, L, pool, max_attn_len)  # [B, L, nb]
    keys = [at_least_fp32(k), dense_block_means(k, n_hist, pool)]
    values = [at_least_fp32(v), dense_block_means(v, n_hist, pool)]
    token_bias = relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias)  # [B, L, L] or None
    biases = [torch.zeros(B, L, L, device=q.device) if token_bias is None else at_least_fp32(token_bias),
              dense_summary_bias(lengths, num_targets, timestamps, pool, blocks.shape[-1], pos_bias, time_bias)]
    allowed = [tokens, blocks]
    if learned_k is not None:
        m = learned_k.shape[1]
        keys.append(at_least_fp32(learned_k).expand(B, -1, -1, -1))
        values.append(at_least_fp32(learned_v).expand(B, -1, -1, -1))
        biases.append(torch.zeros(B, L, m, device=q.device))
        allowed.append(torch.ones(B, L, m, dtype=torch.bool, device=q.device))
    out = dense_attention(q, torch.cat(keys, 2), torch.cat(values, 2), torch.cat(allowed, -1).unsqueeze(1),
                          torch.cat(biases, -1).unsqueeze(1))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
