"""HISTOGRAPH-style read-out: attention over each token's outputs across layers, then over tokens.

Instead of the last layer's candidate output, the head reads

1. layer-wise: for every token, a softmax over its (final-normed) outputs of all stacked layers, scored
   against one learned query, ``h_t = Σ_l a_{t,l} x^l_t``;
2. token-wise: each candidate ``c`` attends over the history tokens and itself,
   ``out_c = h_c + Σ_j b_{c,j} h_j`` with ``b = softmax(W_q h_c · W_k h_j / sqrt(D))``.

Candidates never see each other, so candidate-parallel scoring still equals scoring each alone.
Parameters: ``3 D² + D`` (layer key projection and query, token query and key projections).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from suan.models.sequence import gather_candidates
from suan.ops.common.masks import valid_tokens


class HistographReadout(nn.Module):
    """Layer-wise then token-wise attention read-out of the candidate representation.

    Args:
        d: D.
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        self.layer_query = nn.Parameter(torch.zeros(d))
        self.layer_key = nn.Linear(d, d, bias=False)
        self.token_query = nn.Linear(d, d, bias=False)
        self.token_key = nn.Linear(d, d, bias=False)
        self.scale = d ** -0.5

    def forward(self, states: Tensor, n_hist: Tensor, num_candidates: int) -> Tensor:
        """Candidate representations from every layer's outputs.

        Args:
            states: [B, N, L, D] the (final-normed) outputs of the N stacked layers.
            n_hist: [B] history tokens per row (candidates start there).
            num_candidates: C.

        Returns:
            [B, C, D].
        """
        weights = torch.softmax(self.layer_key(states) @ self.layer_query * self.scale, dim=1)  # [B, N, L]
        h = (weights.unsqueeze(-1) * states).sum(1)  # [B, L, D]
        cand = gather_candidates(h, n_hist, num_candidates)  # [B, C, D]
        q = self.token_query(cand)  # [B, C, D]
        hist_scores = torch.einsum("bcd,bld->bcl", q, self.token_key(h)) * self.scale  # [B, C, L]
        history = valid_tokens(n_hist, h.shape[1]).unsqueeze(1)  # [B, 1, L]
        hist_scores = hist_scores.masked_fill(~history, float("-inf"))
        self_scores = (q * self.token_key(cand)).sum(-1, keepdim=True) * self.scale  # [B, C, 1]
        attn = torch.softmax(torch.cat([hist_scores, self_scores], dim=-1), dim=-1)  # [B, C, L + 1]
        pooled = torch.einsum("bcl,bld->bcd", attn[..., :-1], h) + attn[..., -1:] * cand  # [B, C, D]
        return cand + pooled
