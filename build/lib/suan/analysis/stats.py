"""Accumulate the diagnostics of many recorded batches into one JSON-ready summary.

Maps are reduced batch by batch (nothing [B, H, L, L] is kept), so the memory does not grow with the
number of rows analysed; only the target-attention rows of the first ``users`` samples are stored.
"""

from __future__ import annotations

import torch
from torch import Tensor

from suan.analysis.diagnostics import (
    SINK_KINDS,
    attention_share,
    classify_sinks,
    mass_by_distance,
    mass_by_time_bucket,
    received_mass,
    sink_scores,
    target_attention,
)
from suan.ops.common.masks import TIME_BUCKETS, valid_tokens


class AttentionStats:
    """Running sums of the diagnostics over batches of one model.

    Args:
        num_layers: N. num_heads: H. max_len: the most tokens per row (seq_len + 1).
        tau: sink threshold in multiples of the uniform share. Default: 5.0.
        anchors: anchor positions for primary sinks. Default: 1.
        users: rows whose target attention is kept. Default: 4.
    """

    def __init__(self, num_layers: int, num_heads: int, max_len: int, tau: float = 5.0, anchors: int = 1,
                 users: int = 4) -> None:
        N, H, L = num_layers, num_heads, max_len
        self.tau, self.anchors, self.users_wanted, self.max_len = tau, anchors, users, L
        self.rows = 0
        self.mass_sum = torch.zeros(N, H, L, dtype=torch.float64)
        self.score_sum = torch.zeros(N, H, L, dtype=torch.float64)
        self.position_rows = torch.zeros(L, dtype=torch.float64)
        self.distance = torch.zeros(N, H, L, dtype=torch.float64)
        self.distance_uniform = torch.zeros(N, L, dtype=torch.float64)
        self.time = torch.zeros(N, H, TIME_BUCKETS, dtype=torch.float64)
        self.time_uniform = torch.zeros(N, TIME_BUCKETS, dtype=torch.float64)
        self.queries = 0
        self.sinks = {k: {"count": 0.0, "peak": 0.0, "lifetime": 0.0, "onset": torch.zeros(N + 1, dtype=torch.float64),
                          "positions": torch.zeros(L, dtype=torch.float64),
                          "share": torch.zeros(N, H, dtype=torch.float64)} for k in SINK_KINDS}
        self.full_counts: list[int] | None = None
        self.users: list[dict] = []

    def update(self, layers: list[dict[str, Tensor | None]]) -> None:
        """Add one recorded forward (``Recording.pop()``: one dict per layer)."""
        lengths, num_targets = layers[0]["lengths"], layers[0]["num_targets"]
        B, H, L, _ = layers[0]["probs"].shape
        if L > self.max_len:
            raise ValueError(f"rows have {L} tokens, more than max_len {self.max_len}")
        mass = torch.stack([received_mass(r["probs"], lengths) for r in layers])  # [N, B, H, L]
        self.mass_sum[..., :L] += (mass * lengths.view(1, B, 1, 1)).sum(1).double()
        scores = torch.stack([sink_scores(r["probs"], r["mask"], lengths) for r in layers])  # [N, B, H, L]
        self.score_sum[..., :L] += scores.sum(1).double()
        self.position_rows[:L] += valid_tokens(lengths, L).sum(0).double()
        self._add_sinks(layers, classify_sinks(scores, lengths, self.tau, self.anchors))
        for i, r in enumerate(layers):
            mass, base, queries = mass_by_distance(r["probs"], r["mask"], lengths, num_targets, L)
            self.distance[i, :, :L] += mass.double()
            self.distance_uniform[i, :L] += base.double()
            mass, base, _ = mass_by_time_bucket(r["probs"], r["mask"], lengths, r["timestamps"])
            self.time[i] += mass.double()
            self.time_uniform[i] += base.double()
            if r["route"] is not None:
                self.full_counts = self.full_counts or [0] * len(layers)
                self.full_counts[i] += int(r["route"].sum())
        self.queries += queries
        self.rows += B
        self._add_users(layers, lengths, num_targets)

    def _add_sinks(self, layers: list[dict], found: dict[str, Tensor]) -> None:
        lengths = layers[0]["lengths"]
        for kind in SINK_KINDS:
            keys, acc = found[kind], self.sinks[kind]
            acc["count"] += float(keys.sum())
            acc["peak"] += float(found["peak"][keys].sum())
            acc["lifetime"] += float(found["lifetime"][keys].sum())
            acc["onset"] += torch.bincount(found["onset"][keys], minlength=len(acc["onset"])).double()
            acc["positions"][:keys.shape[1]] += keys.sum(0).double()
            for i, r in enumerate(layers):
                acc["share"][i] += attention_share(r["probs"], keys, lengths).sum(0).double()

    def _add_users(self, layers: list[dict], lengths: Tensor, num_targets: Tensor) -> None:
        rows = range(min(len(lengths), self.users_wanted - len(self.users)))
        if not rows:
            return
        rows_attn = torch.stack([target_attention(r["probs"], lengths, num_targets) for r in layers], 1)  # [B, N, H, L]
        for b in rows:
            n_hist = int(lengths[b] - num_targets[b])
            self.users.append({"n_hist": n_hist, "target_attention": rows_attn[b, :, :, :n_hist + 1].tolist()})

    def result(self) -> dict:
        """The summary (plain lists and numbers; see ``suan.analysis.diagnostics`` for the definitions)."""
        rows, queries = max(self.rows, 1), max(self.queries, 1)
        sinks = {}
        for kind, acc in self.sinks.items():
            count = max(acc["count"], 1.0)
            sinks[kind] = {"per_row": acc["count"] / rows, "mean_peak_score": acc["peak"] / count,
                           "mean_lifetime": acc["lifetime"] / count, "onset_layers": acc["onset"][:-1].tolist(),
                           "positions": acc["positions"].tolist(),
                           "share_per_layer": (acc["share"].mean(1) / rows).tolist(),
                           "share_per_layer_head": (acc["share"] / rows).tolist()}
        return {
            "rows": self.rows, "num_layers": self.score_sum.shape[0], "num_heads": self.score_sum.shape[1],
            "tau": self.tau, "anchors": self.anchors, "early_layers": max(1, self.score_sum.shape[0] // 3),
            "mass_per_position": (self.mass_sum / self.position_rows.clamp(min=1)).tolist(),
            "sink_score_per_position": (self.score_sum / self.position_rows.clamp(min=1)).tolist(),
            "position_rows": self.position_rows.tolist(),
            "sinks": sinks,
            "distance": {"mass": (self.distance / queries).tolist(), "uniform": (self.distance_uniform / queries).tolist()},
            "time_bucket": {"mass": (self.time / queries).tolist(), "uniform": (self.time_uniform / queries).tolist()},
            "users": self.users,
        }
