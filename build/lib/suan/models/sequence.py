"""Building the target-aware token sequence: truncate history, append candidates, gather outputs.

All index arithmetic is tensor ops (gather / where), so the graph exports to ONNX with dynamic
batch, history length and candidate count.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.ops.common.backend import tracing
from suan.ops.common.masks import log_time_bucket

# Fixed cost of one more encoder pass, in tokens: a 256-row batch at L = 50 is 12,800 tokens, so an
# extra chunk must save ~8 % of it (set from benchmarks.train_bench on 2 CPU cores).
CHUNK_OVERHEAD_TOKENS = 1024


def history_width(lengths: Tensor, keep: int) -> int:
    """Columns a batch needs: ``min(keep, longest history)``, at least 1, in eager mode.

    Mixers ignore right padding (the mixer contract), so a batch (or a chunk of one, see
    ``length_chunks``) of short histories can drop the padding columns every row has. A traced,
    compiled or exported graph keeps ``keep`` columns, so it never specialises on one batch.
    """
    if tracing() or not lengths.numel():
        return keep
    return max(1, min(keep, int(lengths.max())))


def length_chunks(lengths: Tensor, keep: int, num_candidates: int = 1,
                  overhead: int = CHUNK_OVERHEAD_TOKENS) -> list[Tensor] | None:
    """Split a batch's rows into 2, 4 or 8 equal chunks of similar history length, or ``None`` (one pass).

    Each chunk is encoded at its own width, so a batch with a few long histories among many short
    ones (P-AZ: median 4 of L = 50, yet nearly every 256-row batch holds a 50) stops paying the
    longest row's width for every row. The cost model counts tokens, ``rows x (width + C)`` per chunk,
    plus ``overhead`` per extra chunk; the cheapest split wins. Always ``None`` when tracing.

    Args:
        lengths: [B] history lengths.
        keep: the model's L (longer histories are cut to it).
        num_candidates: C tokens appended to every row.

    Returns:
        Row indices [B_c] per chunk, shortest histories first, or ``None``.
    """
    B = lengths.numel()
    if tracing() or B < 2:
        return None
    widths = lengths.clamp(min=1, max=keep)  # [B] columns each row needs (history_width's rule)
    order = torch.argsort(widths, stable=True)  # [B]
    width = widths[order].tolist()  # sorted
    best, best_cost = None, B * (width[-1] + num_candidates)
    for k in (2, 4, 8):
        if k > B:
            break
        bounds = [round(i * B / k) for i in range(k + 1)]
        cost = (k - 1) * overhead + sum((hi - lo) * (width[hi - 1] + num_candidates)
                                        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True))
        if cost < best_cost:
            best, best_cost = bounds, cost
    if best is None:
        return None
    return [order[lo:hi] for lo, hi in zip(best[:-1], best[1:], strict=True)]


def keep_recent(x: Tensor, lengths: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """Keep the most recent ``keep`` items of right-padded sequences.

    Args:
        x: [B, Lh, ...] right-padded.
        lengths: [B] valid items.
        keep: m, the most items kept.

    Returns:
        ``([B, m, ...], new lengths [B])``, right-padded. The width is always ``m`` (no Python
        ``min`` over the input's length), so an exported graph accepts any history length >= 1.
    """
    m = keep
    new_len = torch.clamp(torch.clamp(lengths, max=m), max=x.shape[1])
    start = (lengths - new_len).unsqueeze(1)  # [B, 1]
    idx = start + torch.arange(m, device=x.device).unsqueeze(0)  # [B, m]
    idx = torch.clamp(idx, max=x.shape[1] - 1)  # needs Lh >= 1: pad empty histories with one slot
    idx = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    out = torch.gather(x, 1, idx)
    valid = (torch.arange(m, device=x.device).unsqueeze(0) < new_len.unsqueeze(1))
    valid = valid.view(*valid.shape, *([1] * (x.dim() - 2)))
    return torch.where(valid, out, torch.zeros_like(out)), new_len


def append_candidates(hist: Tensor, n_hist: Tensor, cand: Tensor) -> Tensor:
    """Put C candidate items right after each row's history.

    Args:
        hist: [B, m, ...] right-padded history.
        n_hist: [B] history lengths.
        cand: [B, C, ...].

    Returns:
        [B, m + C, ...] with ``out[b, n_hist[b] + c] = cand[b, c]`` and zeros after.
    """
    B, m = hist.shape[:2]
    C = cand.shape[1]
    tail = hist.shape[2:]
    padded = torch.cat([hist, torch.zeros(B, C, *tail, dtype=hist.dtype, device=hist.device)], dim=1)
    pos = torch.arange(m + C, device=hist.device).unsqueeze(0)  # [1, m + C]
    rel = pos - n_hist.unsqueeze(1)  # [B, m + C] index into candidates
    is_cand = (rel >= 0) & (rel < C)
    idx = rel.clamp(0, C - 1)
    idx = idx.view(B, m + C, *([1] * len(tail))).expand(-1, -1, *tail)
    gathered = torch.gather(cand, 1, idx)  # [B, m + C, ...]
    return torch.where(is_cand.view(B, m + C, *([1] * len(tail))), gathered, padded)


def gather_candidates(y: Tensor, n_hist: Tensor, num_candidates: int) -> Tensor:
    """[B, L, D] → [B, C, D]: outputs at the candidate positions."""
    idx = n_hist.unsqueeze(1) + torch.arange(num_candidates, device=y.device).unsqueeze(0)  # [B, C]
    return torch.gather(y, 1, idx.unsqueeze(-1).expand(-1, -1, y.shape[-1]))


def age_buckets(target_ts: Tensor, ts: Tensor) -> Tensor:
    """Log bucket of each behaviour's age at impression time (candidates: age 0 → bucket 0).

    Args:
        target_ts: [B]; ts: [B, L].

    Returns:
        [B, L] int64 in 0..TIME_BUCKETS-1.
    """
    return log_time_bucket(target_ts.unsqueeze(1) - ts)


def start_positions(n_hist: Tensor, length: int, seq_len: int) -> Tensor:
    """Request-independent position ids: ``1 + min(i, seq_len - 1)`` for history token ``i``, 0 for candidates.

    Args:
        n_hist: [B] history lengths.
        length: L, tokens per row (history, then candidates, then padding).
        seq_len: positions learned; later behaviours share the last one.

    Returns:
        [B, L] int64 in 0..seq_len.
    """
    idx = torch.arange(length, device=n_hist.device).unsqueeze(0)  # [1, L]
    return torch.where(idx < n_hist.unsqueeze(1), 1 + idx.clamp(max=seq_len - 1), torch.zeros_like(idx))


def gap_buckets(ts: Tensor, n_hist: Tensor, target_ts: Tensor) -> Tensor:
    """Log bucket of each behaviour's gap to the previous one (the first: 0), of a candidate's to the last one.

    Args:
        ts: [B, L] timestamps of ``[history, candidates, pad]``.
        n_hist: [B] history lengths.
        target_ts: [B] impression time (an empty history gives its candidates gap 0).

    Returns:
        [B, L] int64 in 0..TIME_BUCKETS-1.
    """
    idx = torch.arange(ts.shape[1], device=ts.device).unsqueeze(0)  # [1, L]
    previous = torch.cat([ts[:, :1], ts[:, :-1]], dim=1)  # [B, L]
    last = torch.gather(ts, 1, (n_hist - 1).clamp(min=0).unsqueeze(1))  # [B, 1]
    last = torch.where(n_hist.unsqueeze(1) > 0, last, target_ts.unsqueeze(1))
    return log_time_bucket(ts - torch.where(idx < n_hist.unsqueeze(1), previous, last))
