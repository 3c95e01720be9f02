"""Variable-length chunks of the history (the definition, shared by both paths) and a session rule for them."""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import positions


def session_boundaries(timestamps: Tensor, lengths: Tensor, num_targets: Tensor, session_gap: int) -> Tensor:
    """A token starts a chunk when at least ``session_gap`` seconds passed since the previous history token.

    Args:
        timestamps: [B, L] int64. lengths, num_targets: [B]. session_gap: seconds.

    Returns:
        [B, L] bool (candidates compare with the last history token; position 0 always starts one).
    """
    pos = positions(lengths, num_targets, timestamps.shape[1])  # [B, L]
    previous = torch.gather(timestamps, 1, (pos - 1).clamp(min=0))  # [B, L]
    return (pos == 0) | (timestamps - previous >= session_gap)


def chunk_ids(boundaries: Tensor, lengths: Tensor, num_targets: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Chunk of every history token and the chunk every query belongs to.

    A chunk starts at every given boundary and at every position that is a multiple of ``chunk`` (so no
    chunk is longer than ``chunk``). A candidate belongs to the last history chunk unless it starts one
    itself (its boundary flag or the grid), exactly as if it were the next history token.

    Args:
        boundaries: [B, L] bool. lengths, num_targets: [B]. chunk: c >= 1.

    Returns:
        ([B, L] int64 chunk of each key, -1 for non-history tokens; [B, L] int64 chunk of each query).
    """
    L = boundaries.shape[1]
    pos = positions(lengths, num_targets, L)  # [B, L]
    starts = boundaries | (pos % chunk == 0)
    history = torch.arange(L, device=boundaries.device) < (lengths - num_targets).unsqueeze(1)
    hist_starts = (starts & history).long()
    before = hist_starts.cumsum(dim=1) - hist_starts  # [B, L] history chunk starts before each index
    key_chunk = torch.where(history, before + hist_starts - 1, -1)
    query_chunk = torch.gather(before, 1, pos) + starts.long() - 1
    return key_chunk, query_chunk
