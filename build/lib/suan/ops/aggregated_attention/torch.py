"""Fast CPU path and ONNX export path: gather ``w + 1`` window slots, ``ceil(L / b)`` block summaries and the
``m`` learned tokens per query. Cost O(B·H·L·(w + L/b + m)·D)."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import positions, valid_tokens
from suan.ops.common.slots import block_means, gathered_attention, local_slots, pair_bias, summary_slots, take


def aggregated_attention(q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor,
                         timestamps: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None, window: int,
                         pool: int, learned_k: Tensor | None, learned_v: Tensor | None,
                         max_attn_len: int) -> Tensor:
    B, H, L, D = q.shape
    pos = positions(lengths, num_targets, L)  # [B, L]
    offsets = torch.arange(window + 1, device=q.device)  # [w + 1], slot 0 = self
    key, valid = local_slots(pos, lengths, offsets, torch.full_like(pos, window), max_attn_len)  # [B, L, w + 1]
    bias = pair_bias(offsets, timestamps.unsqueeze(-1) - take(timestamps, key), pos_bias, time_bias)
    k_sum, v_sum = block_means(k, pool), block_means(v, pool)  # [B, H, nb, D]
    nb = k_sum.shape[2]
    c_valid, c_bias = summary_slots(pos, lengths, timestamps, pool, nb, max_attn_len, pos_bias, time_bias)
    keys, values = [k, k_sum], [v, v_sum]
    index = [key, (L + torch.arange(nb, device=q.device)).expand(B, L, -1)]  # rows after the tokens
    valids = [valid, c_valid]
    biases = [torch.zeros(valid.shape, device=q.device) if bias is None else bias, c_bias]
    if learned_k is not None:
        m = learned_k.shape[1]
        keys.append(learned_k.to(k.dtype).expand(B, -1, -1, -1))
        values.append(learned_v.to(v.dtype).expand(B, -1, -1, -1))
        index.append((L + nb + torch.arange(m, device=q.device)).expand(B, L, -1))
        valids.append(torch.ones(B, L, m, dtype=torch.bool, device=q.device))
        biases.append(torch.zeros(B, L, m, device=q.device))
    out = gathered_attention(q, torch.cat(keys, 2), torch.cat(values, 2), torch.cat(index, -1).unsqueeze(1),
                             torch.cat(valids, -1).unsqueeze(1),
                             torch.cat(biases, -1).unsqueeze(1))  # [B, H, L, D]
    return out * valid_tokens(lengths, L).view(B, 1, L, 1).to(out.dtype)
