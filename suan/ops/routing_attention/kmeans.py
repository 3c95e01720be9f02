"""Online spherical k-means of the routing: assignment (shared by both paths: it is the definition) and
the moving-average update of the centres."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from suan.ops.common.masks import as_targets
from suan.ops.common.precision import at_least_fp32


def assign_clusters(k: Tensor, centroids: Tensor) -> Tensor:
    """Nearest centroid of every L2-normalised key (cosine similarity, ties to the lower index).

    Args:
        k: [B, H, L, D]. centroids: [H, C, D] unit rows.

    Returns:
        [B, H, L] int64 in ``0..C-1``.
    """
    unit_k = F.normalize(at_least_fp32(k), dim=-1)
    sims = torch.einsum("bhld,hcd->bhlc", unit_k, at_least_fp32(centroids))  # [B, H, L, C]
    return sims.argmax(dim=-1)


@torch.no_grad()
def update_centroids(centroids: Tensor, k: Tensor, lengths: Tensor, num_targets: Tensor | int,
                     decay: float) -> Tensor:
    """One online (mini-batch) spherical k-means step: ``mu_c <- normalize(decay·mu_c + (1 - decay)·mean_c)``.

    ``mean_c`` is the mean normalised key of the history tokens routed to ``c`` in this batch; a cluster
    that got none keeps its centre.

    Args:
        centroids: [H, C, D] unit rows. k: [B, H, L, D]. lengths, num_targets: [B]. decay: in [0, 1).

    Returns:
        [H, C, D] new unit-norm centroids.
    """
    B, H, L, D = k.shape
    C = centroids.shape[1]
    num_targets = as_targets(num_targets, lengths)
    history = torch.arange(L, device=k.device) < (lengths - num_targets).view(B, 1)  # [B, L]
    onehot = F.one_hot(assign_clusters(k, centroids), C).float() * history.view(B, 1, L, 1)  # [B, H, L, C]
    sums = torch.einsum("bhlc,bhld->hcd", onehot, F.normalize(at_least_fp32(k), dim=-1))  # [H, C, D]
    counts = onehot.sum(dim=(0, 2)).unsqueeze(-1)  # [H, C, 1]
    means = sums / counts.clamp(min=1.0)
    moved = F.normalize(decay * at_least_fp32(centroids) + (1 - decay) * means, dim=-1)
    return torch.where(counts > 0, moved, at_least_fp32(centroids)).to(centroids.dtype)
