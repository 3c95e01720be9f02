"""Attention diagnostics: pure functions of recorded probabilities (known answers on hand-built maps).

Conventions: ``probs`` [B, H, L, L] (queries x keys), rows of valid queries sum to 1, padded query rows
are 0; ``mask`` [B, L, L] bool (the keys each query may attend to); ``lengths`` [B] valid tokens, the
last ``num_targets`` [B] of them candidates; N stacked layers.

- **mass received** by key j: the mean over the valid queries of ``A[i, j]``; over a row's ``lengths``
  tokens it sums to 1 (``mass × lengths`` = 1 for an average key).
- **sink score**: mass / max(1 / lengths, u_j), with ``u_j`` the mass key j would receive if every query
  attended uniformly over its allowed keys. Both shares matter: under a causal mask uniform attention
  already gives position 0 about ``ln(L)`` times the average share, and a key only a few queries can see
  (the most recent behaviour) can exceed its tiny ``u_j`` without attracting much attention at all. A
  score >= tau means tau times more than both.
- **sinks**, per row and key over the layers: the key sinks at layer l when its sink score is >= tau in
  some head; ``onset`` is the first such layer, ``lifetime`` the number of such layers. *Primary*: an anchor
  position (``j < anchors``, the oldest kept behaviours) with onset in the early layers (the first
  ``max(1, N // 3)``); *secondary*: onset in a later (middle) layer; *early*: any other key that sinks
  in the early layers.
- **mass vs distance / time bucket** (position bias): ``A[i, j]`` summed over valid queries and grouped
  by the position gap ``pos_i - pos_j`` or the log time-gap bucket, next to the same sums for uniform
  attention over the allowed keys (the baseline a learned bias departs from); divided by the number of
  queries, each curve sums to 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.masks import TIME_BUCKETS, positions, time_buckets, valid_tokens

SINK_KINDS = ("primary", "secondary", "early")


def received_mass(probs: Tensor, lengths: Tensor) -> Tensor:
    """Mean attention each key receives from the valid queries.

    Args:
        probs: [B, H, L, L]. lengths: [B].

    Returns:
        [B, H, L], summing to 1 over keys for every row with lengths > 0.
    """
    B, _, L, _ = probs.shape
    queries = valid_tokens(lengths, L).view(B, 1, L, 1).to(probs.dtype)
    return (probs * queries).sum(2) / lengths.clamp(min=1).view(B, 1, 1).to(probs.dtype)


def uniform_mass(mask: Tensor, lengths: Tensor) -> Tensor:
    """Mass each key would receive if every valid query attended uniformly over its allowed keys.

    Args:
        mask: [B, L, L] bool. lengths: [B].

    Returns:
        [B, L].
    """
    allowed = mask.to(torch.float32)
    uniform = allowed / allowed.sum(-1, keepdim=True).clamp(min=1)  # [B, L, L]
    return received_mass(uniform.unsqueeze(1), lengths).squeeze(1)


def sink_scores(probs: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
    """Received mass over ``max(1 / lengths, uniform_mass)`` → [B, H, L] (0 at padded keys)."""
    share = torch.maximum(uniform_mass(mask, lengths), 1 / lengths.clamp(min=1).unsqueeze(1).to(torch.float32))
    return received_mass(probs, lengths) / share.unsqueeze(1).to(probs.dtype)


def classify_sinks(scores: Tensor, lengths: Tensor, tau: float, anchors: int = 1,
                   early_layers: int = 0) -> dict[str, Tensor]:
    """Primary, secondary and early sinks of every row, with onset, lifetime and peak score.

    Args:
        scores: [N, B, H, L] sink scores of N layers (:func:`sink_scores` per layer).
        lengths: [B].
        tau: a key sinks at a layer when its score is >= tau in some head.
        anchors: positions ``j < anchors`` are anchors (primary-sink candidates). Default: 1.
        early_layers: layers counted as early (0 = ``max(1, N // 3)``). Default: 0.

    Returns:
        ``primary``, ``secondary``, ``early``: [B, L] bool; ``onset``: [B, L] int64 (N = never);
        ``lifetime``: [B, L] int64 layers; ``peak``: [B, L] the highest score over layers and heads.
    """
    N, _, _, L = scores.shape
    early = early_layers or max(1, N // 3)
    sinks = (scores >= tau).any(2) & valid_tokens(lengths, L).unsqueeze(0)  # [N, B, L]
    layer = torch.arange(N, device=scores.device).view(N, 1, 1)
    onset = torch.where(sinks, layer, torch.full_like(layer, N)).amin(0)  # [B, L]
    anchor = (torch.arange(L, device=scores.device) < anchors).unsqueeze(0)  # [1, L]
    return {"primary": anchor & (onset < early), "secondary": (onset >= early) & (onset < N),
            "early": ~anchor & (onset < early), "onset": onset, "lifetime": sinks.sum(0),
            "peak": scores.amax(dim=(0, 2))}


def attention_share(probs: Tensor, keys: Tensor, lengths: Tensor) -> Tensor:
    """Share of the valid queries' attention that lands on ``keys``, per row and head.

    Args:
        probs: [B, H, L, L]. keys: [B, L] bool. lengths: [B].

    Returns:
        [B, H] in [0, 1].
    """
    return (received_mass(probs, lengths) * keys.unsqueeze(1).to(probs.dtype)).sum(-1)


def grouped_mass(probs: Tensor, mask: Tensor, lengths: Tensor, groups: Tensor,
                 size: int) -> tuple[Tensor, Tensor, int]:
    """Attention and uniform attention summed over valid queries, grouped by a key-pair index.

    Args:
        probs: [B, H, L, L]. mask: [B, L, L] bool. lengths: [B].
        groups: [B, L, L] int64 group of every (query, key) pair, clamped into ``0..size-1``.
        size: number of groups.

    Returns:
        ``(mass [H, size], uniform [size], queries)``: sums, and the number of valid queries (divide by it
        for curves that sum to 1).
    """
    B, H, L, _ = probs.shape
    queries = valid_tokens(lengths, L).unsqueeze(-1)  # [B, L, 1]
    allowed = (mask & queries).to(probs.dtype)  # [B, L, L]
    uniform = allowed / allowed.sum(-1, keepdim=True).clamp(min=1)  # [B, L, L]
    index = groups.clamp(0, size - 1).reshape(-1)  # [B·L·L]
    weights = (probs * queries.unsqueeze(1).to(probs.dtype)).transpose(0, 1).reshape(H, -1)  # [H, B·L·L]
    mass = probs.new_zeros(H, size).index_add_(1, index, weights)
    base = probs.new_zeros(size).index_add_(0, index, uniform.reshape(-1))
    return mass, base, int(queries.sum())


def mass_by_distance(probs: Tensor, mask: Tensor, lengths: Tensor, num_targets: Tensor,
                     size: int) -> tuple[Tensor, Tensor, int]:
    """:func:`grouped_mass` by the position gap ``pos_i - pos_j`` (candidates at n_hist), gaps 0..size-1."""
    pos = positions(lengths, num_targets, probs.shape[-1])  # [B, L]
    return grouped_mass(probs, mask, lengths, pos.unsqueeze(2) - pos.unsqueeze(1), size)


def mass_by_time_bucket(probs: Tensor, mask: Tensor, lengths: Tensor,
                        timestamps: Tensor) -> tuple[Tensor, Tensor, int]:
    """:func:`grouped_mass` by the log time-gap bucket of (query, key), ``TIME_BUCKETS`` groups."""
    return grouped_mass(probs, mask, lengths, time_buckets(timestamps), TIME_BUCKETS)


def target_attention(probs: Tensor, lengths: Tensor, num_targets: Tensor) -> Tensor:
    """The first candidate's attention row: [B, H, L] (history keys, then itself at index n_hist)."""
    B, H, L, _ = probs.shape
    row = (lengths - num_targets).clamp(min=0, max=L - 1).view(B, 1, 1, 1).expand(B, H, 1, L)
    return probs.gather(2, row).squeeze(2)


def router_summary(full_counts: list[int], samples: int, seq_len: int, local_window: int,
                   dilation: int) -> dict[str, float | list[float]]:
    """Share of samples routed to full attention per layer, and the attention FLOPs a deployment saves.

    Attention FLOPs per layer and sample are ``4·T·K·D`` with K = T keys per query for full attention and
    ``K = min(T, (k + 1) + (T // r + 1))`` key slots for the sparse path (T = seq_len + 1 tokens), so
    running only the chosen branch saves ``mean_l (1 - full_l) (1 - K / T)`` of all-full attention FLOPs.

    Args:
        full_counts: per layer, samples that chose full attention.
        samples: samples seen.
        seq_len, local_window, dilation: the model's L, k and r.
    """
    T = seq_len + 1
    keys = min(T, local_window + 1 + T // dilation + 1)
    full = [c / max(samples, 1) for c in full_counts]
    saved = sum((1 - f) * (1 - keys / T) for f in full) / max(len(full), 1)
    return {"full_fraction_per_layer": full, "full_fraction": sum(full) / max(len(full), 1),
            "sparse_keys_per_query": keys, "tokens": T, "attention_flops_saved": saved}
