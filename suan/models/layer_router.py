"""Flux-style layer router: per layer and sample, full softmax attention or LightSUAN sparse attention.

A tiny router reads the mean of the layer's input over history tokens (candidates excluded, so
candidates scored together cannot change each other's route), maps it to 2 logits and picks a branch:
a hard Gumbel-softmax sample with straight-through gradients in training, the argmax in eval. Both
branches are computed and the chosen one kept (the choice differs per sample within a batch); the
attention FLOPs a deployment would save by running only the chosen branch are estimated from the
recorded choices by ``suan.analysis.diagnostics.router_summary``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from suan.mixers.base import MixerConfig, MixerOptions
from suan.mixers.registry import build_mixer
from suan.ops.common.masks import as_targets, valid_tokens

FULL, SPARSE = 0, 1


class RoutedAttention(nn.Module):
    """Router + full (``softmax_rel``) and sparse (``sparse``) branches sharing the layer's mixer config.

    Args:
        cfg: the layer's :class:`MixerConfig` (its name is replaced per branch; its options are the sparse
            branch's :class:`~suan.mixers.sparse_attn.SparseOptions`).
        temperature: Gumbel-softmax temperature in training. Default: 1.0.
    """

    def __init__(self, cfg: MixerConfig, temperature: float = 1.0) -> None:
        super().__init__()
        self.full = build_mixer(cfg.replace(name="softmax_rel", options=MixerOptions()))  # full attention: no options
        self.sparse = build_mixer(cfg.replace(name="sparse"))  # cfg.options: SparseOptions (or the base = its defaults)
        self.gate = nn.Linear(cfg.d_model, 2)
        self.temperature = temperature
        self.recorder: Any = None

    def route(self, x: Tensor, lengths: Tensor, num_targets: Tensor) -> Tensor:
        """One-hot branch choice [B, 2] (column 0 = full): straight-through Gumbel in training, argmax in eval."""
        history = valid_tokens(lengths - num_targets, x.shape[1]).unsqueeze(-1).to(x.dtype)  # [B, L, 1]
        pooled = (x * history).sum(1) / history.sum(1).clamp(min=1.0)  # [B, D]
        logits = self.gate(pooled)  # [B, 2]
        if self.training:
            return F.gumbel_softmax(logits, tau=self.temperature, hard=True)
        return F.one_hot(logits.argmax(-1), 2).to(x.dtype)

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        """x [B, L, D] → [B, L, D]."""
        num_targets = as_targets(num_targets, lengths)
        choice = self.route(x, lengths, num_targets)  # [B, 2]
        kw = dict(lengths=lengths, num_targets=num_targets, timestamps=timestamps)
        y = choice[:, FULL, None, None] * self.full(x, **kw) + choice[:, SPARSE, None, None] * self.sparse(x, **kw)
        if self.recorder is not None:
            full, sparse = self.full.attention_probs(x, **kw), self.sparse.attention_probs(x, **kw)
            probs = choice[:, FULL, None, None, None] * full + choice[:, SPARSE, None, None, None] * sparse
            route = choice[:, FULL] > 0.5  # [B] True = full attention
            mask = torch.where(route.view(-1, 1, 1), self.full.key_mask(lengths, num_targets, x.shape[1]),
                               self.sparse.key_mask(lengths, num_targets, x.shape[1]))  # [B, L, L]
            self.recorder.record(probs, mask=mask, **kw, route=route)
        return y
