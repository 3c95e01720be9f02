"""The L2 term on embedding tables, over whole tables or over the rows a batch looks up.

``table`` is FuxiCTR's ``λ/2 · Σ‖W‖²`` over every feature table at every step. ``batch`` touches only
the rows a batch looks up (what a sharded table of 10^8 rows can afford) and weights row j by
``1 / p_j``, its chance of appearing in a batch (DIN's mini-batch aware regulariser): then the
expected penalty per step is the ``table`` one, whatever the batch size, and one λ means the same
thing in both scopes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from suan.models.inputs import FeatureEmbedder


def touch_weights(counts: dict[str, np.ndarray], rows: int, batch_size: int) -> dict[str, Tensor]:
    """``1 / p_j`` per vocabulary id, with ``p_j = min(1, batch_size · n_j / rows)``.

    Args:
        counts: vocabulary → training occurrences per id ([V]; padding and OOV may be 0).
        rows: training rows per epoch (N).
        batch_size: B.

    Returns:
        vocabulary → float32 weights [V], >= 1 (an id never counted is treated as seen once).
    """
    out = {}
    for vocab, n in counts.items():
        p = np.minimum(1.0, batch_size * np.maximum(np.asarray(n, dtype=np.float64), 1.0) / max(rows, 1))
        out[vocab] = torch.from_numpy((1.0 / p).astype(np.float32))
    return out


def embedding_penalty(embedder: FeatureEmbedder, batch: dict[str, Tensor], l2: float, scope: str,
                      weights: dict[str, Tensor] | None = None) -> Tensor:
    """``λ/2 · Σ w_j ‖e_j‖²`` over the feature tables (positions and time buckets are not feature tables).

    Args:
        embedder: the model's feature embeddings.
        batch: the training batch (``batch`` scope reads which rows it looks up).
        l2: λ.
        scope: ``table`` (all rows, w = 1) or ``batch`` (looked-up rows other than padding, w from
            :func:`touch_weights`, or 1 where ``weights`` is None).
        weights: vocabulary → per-id weights [V] for the ``batch`` scope.

    Returns:
        A scalar tensor (0 when ``l2`` is 0).
    """
    tables = embedder.tables()
    ref = next(iter(tables.values())).weight
    if l2 == 0:
        return ref.new_zeros(())
    if scope == "table":
        return 0.5 * l2 * sum(t.weight.square().sum() for t in tables.values())
    total = ref.new_zeros(())
    for key, ids in embedder.lookups(batch).items():
        rows = torch.unique(ids)
        rows = rows[rows > 0]  # the padding row is zero and never trained
        sq = tables[key].weight[rows].square().sum(-1)  # [R]
        if weights is not None:
            sq = sq * weights[embedder.table_vocab[key]].to(sq.device)[rows]
        total = total + sq.sum()
    return 0.5 * l2 * total
