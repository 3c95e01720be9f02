"""CTR models over the feature map: sequence encoders (SUAN, LightSUAN, BST, HSTU) and pooling ones (DNN, DIN).

``forward(batch)`` returns raw logits, [B] for one candidate per sample (target fields [B]) or
[B, C] for candidate-parallel scoring (target fields [B, C]); ``probabilities`` calibrates them
for the negative sampling rate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from features.schema import FeatureMap
from suan.config import ModelConfig, mixer_spec, parse_ablate
from suan.mixers.base import MixerConfig
from suan.models.blocks import BLOCKS, UNIFIED_WIRINGS, UnifiedAttentionBlock
from suan.models.histograph import HistographReadout
from suan.models.inputs import FeatureEmbedder, init_embeddings
from suan.models.sequence import (
    age_buckets,
    append_candidates,
    gap_buckets,
    gather_candidates,
    history_width,
    keep_recent,
    length_chunks,
    start_positions,
)
from suan.modules.layers import MLPHead
from suan.ops.common.masks import TIME_BUCKETS, positions, valid_tokens


class CTRModel(nn.Module):
    """Shared parts: embeddings, head, calibration."""

    def __init__(self, cfg: ModelConfig, fmap: FeatureMap, head_in: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = FeatureEmbedder(fmap, cfg.d_model, cfg.context_dim)
        self.head = MLPHead(head_in + self.embed.head_side_width, cfg.head_widths)

    def _candidate_ids_shape(self, batch: dict[str, Tensor]) -> tuple[bool, int]:
        ids = batch[next(iter(self.embed.target_fields.values()))]
        return ids.dim() == 1, 1 if ids.dim() == 1 else ids.shape[1]

    def _score(self, features: Tensor, batch: dict[str, Tensor], profile: Tensor, single: bool) -> Tensor:
        """features [B, C, F] → logits [B] or [B, C]."""
        B, C = features.shape[:2]
        side = self.embed.head_side(batch, profile).unsqueeze(1).expand(-1, C, -1)  # [B, C, S]
        logits = self.head(torch.cat([features, side], dim=-1).flatten(0, 1)).view(B, C)  # [B, C]
        return logits.squeeze(1) if single else logits

    def probabilities(self, logits: Tensor) -> Tensor:
        """Calibrated pCTR: ``sigmoid(logit + ln(rate))`` undoes keeping only ``rate`` of negatives."""
        return torch.sigmoid(logits + math.log(self.cfg.negative_sampling_rate))


class SequenceCTR(CTRModel):
    """SUAN / BST / HSTU: stacked blocks over [history, candidates]; the head reads candidate outputs."""

    def __init__(self, cfg: ModelConfig, fmap: FeatureMap) -> None:
        super().__init__(cfg, fmap, head_in=cfg.d_model * (1 + cfg.candidate_in_head + cfg.pool_history
                                                           + cfg.pool_inputs))
        d = cfg.d_model
        self.pos_emb = nn.Embedding(cfg.seq_len + 1, d)
        self.time_emb = nn.Embedding(TIME_BUCKETS, d)
        block, ablations = BLOCKS[cfg.arch], parse_ablate(cfg.ablate, cfg.num_layers)
        unified = block is UnifiedAttentionBlock
        block = UNIFIED_WIRINGS[cfg.wiring] if unified else block
        options = {"layer_router": True} if cfg.layer_router else {}
        if cfg.incremental and unified:
            options["causal_gate"] = True
        self.blocks = nn.ModuleList(block(mixer_config(cfg).replace(ablate=ablations.get(i, "")), cfg.ffn_mult,
                                          cfg.dropout, **options) for i in range(cfg.num_layers))
        self.final_norm = nn.RMSNorm(d)
        self.readout = HistographReadout(d) if cfg.head == "histograph" else None
        self.batch_coupled = mixer_spec(cfg.mixer_name).batch_coupled  # no length chunks: see MixerSpec

    def encode(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, bool]:
        """Candidate outputs [B, C, D], profile tokens [B, P, D], and whether C came as one.

        In training, rows of very different history lengths are encoded in chunks of similar length
        (``length_chunks``): the same outputs as one padded pass, at a fraction of the tokens. The
        head still sees the whole batch, so its BatchNorm statistics are those of a random batch.
        """
        single, C = self._candidate_ids_shape(batch)
        profile = self.embed.profile(batch)  # [B, P, D]
        chunks = None
        if self.training and self.cfg.chunk_by_length and not self.cfg.incremental and not self.batch_coupled:
            chunks = length_chunks(batch["hist_len"], self.cfg.seq_len, C)
        if chunks is None:
            return self._encode_rows(batch, profile, C), profile, single
        outs = [self._encode_rows(take_rows(batch, idx), profile[idx], C) for idx in chunks]  # [B_c, C, D] each
        back = torch.argsort(torch.cat(chunks))  # chunk order -> batch order
        return torch.cat(outs)[back], profile, single

    def _encode_rows(self, batch: dict[str, Tensor], profile: Tensor, C: int) -> Tensor:
        """Candidate outputs [B, C, D] of the stacked blocks over [history, candidates]."""
        if self.cfg.incremental:  # the whole history: a per-user state never forgets a behaviour
            hist, n, hist_ts = self.embed.history(batch), batch["hist_len"], batch["hist_ts"]  # [B, m, D]
        else:
            m = history_width(batch["hist_len"], self.cfg.seq_len)
            hist, n = keep_recent(self.embed.history(batch), batch["hist_len"], m)  # [B, m, D]
            hist_ts, _ = keep_recent(batch["hist_ts"], batch["hist_len"], m)  # [B, m]
        target_ts = batch["target_ts"]
        tokens = append_candidates(hist, n, self.embed.candidates(batch))  # [B, m + C, D]
        ts = append_candidates(hist_ts, n, target_ts.unsqueeze(1).expand(-1, C))  # [B, m + C]
        lengths = n + C
        num_targets = torch.full_like(n, C)
        L = tokens.shape[1]
        if self.cfg.incremental:
            pos, time = start_positions(n, L, self.cfg.seq_len), gap_buckets(ts, n, target_ts)  # [B, L]
        else:
            recency = n.unsqueeze(1) - positions(lengths, num_targets, L)  # [B, L] 0 = candidate
            pos, time = recency.clamp(0, self.cfg.seq_len), age_buckets(target_ts, ts)  # [B, L]
        tokens = tokens + self.pos_emb(pos) + self.time_emb(time)
        valid = valid_tokens(lengths, L)
        x = tokens * valid.unsqueeze(-1).to(tokens.dtype)
        ctx = {"lengths": lengths, "num_targets": num_targets, "timestamps": ts, "profile": profile,
               "history": valid_tokens(n, L), "first": x}
        states = []
        for block in self.blocks:
            x = block(x, ctx)
            states.append(x)
        # the last layer's normed outputs [B, L, D], needed by the plain head and by the pooled history
        y = self.final_norm(x) if self.readout is None or self.cfg.pool_history else None
        if self.readout is not None:
            out = self.readout(self.final_norm(torch.stack(states, dim=1)), n, C)  # [B, C, D]
        else:
            out = gather_candidates(y, n, C)  # [B, C, D]
        if self.cfg.pool_history:
            # the mean of the history outputs: candidates never reach them (causal mask), one vector per row
            w = valid_tokens(n, L).unsqueeze(-1).to(y.dtype)  # [B, L, 1] history tokens only
            out = with_pooled_history(out, (y * w).sum(1) / w.sum(1).clamp(min=1.0))
        if self.cfg.pool_inputs:
            # the mean of the history's input embeddings (the DNN's summary), one vector per row
            w = valid_tokens(n, hist.shape[1]).unsqueeze(-1).to(hist.dtype)  # [B, m, 1]
            out = with_pooled_history(out, (hist * w).sum(1) / w.sum(1).clamp(min=1.0))
        return out

    def score_outputs(self, out: Tensor, batch: dict[str, Tensor], profile: Tensor, single: bool) -> Tensor:
        """Candidate outputs [B, C, D] → logits, beside the candidate's own embeddings when the head reads them."""
        if self.cfg.candidate_in_head:
            out = torch.cat([out, self.embed.candidates(batch)], dim=-1)  # [B, C, 2D]
        return self._score(out, batch, profile, single)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        out, profile, single = self.encode(batch)
        return self.score_outputs(out, batch, profile, single)


class PoolingCTR(CTRModel):
    """DNN (mean-pooled history) and DIN (target attention with an activation unit)."""

    def __init__(self, cfg: ModelConfig, fmap: FeatureMap) -> None:
        super().__init__(cfg, fmap, head_in=2 * cfg.d_model)
        d = cfg.d_model
        self.attention_unit = (nn.Sequential(nn.Linear(4 * d, 80), nn.Sigmoid(), nn.Linear(80, 40), nn.Sigmoid(),
                                             nn.Linear(40, 1)) if cfg.arch == "din" else None)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        single, C = self._candidate_ids_shape(batch)
        m = history_width(batch["hist_len"], self.cfg.seq_len)
        hist, n = keep_recent(self.embed.history(batch), batch["hist_len"], m)  # [B, m, D]
        cand = self.embed.candidates(batch)  # [B, C, D]
        mask = valid_tokens(n, hist.shape[1]).to(hist.dtype)  # [B, m]
        if self.attention_unit is None:
            pooled = (hist * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)  # [B, D]
            pooled = pooled.unsqueeze(1).expand(-1, C, -1)  # [B, C, D]
        else:
            h = hist.unsqueeze(1).expand(-1, C, -1, -1)  # [B, C, m, D]
            t = cand.unsqueeze(2).expand_as(h)  # [B, C, m, D]
            w = self.attention_unit(torch.cat([h, t, h - t, h * t], dim=-1)).squeeze(-1)  # [B, C, m]
            if self.cfg.din_weights == "softmax":  # over the row's behaviours; an empty row pools zeros below
                w = w.masked_fill(mask.unsqueeze(1) == 0, -1e9).softmax(-1)  # [B, C, m]
            pooled = ((w * mask.unsqueeze(1)).unsqueeze(-1) * h).sum(2)  # [B, C, D]
        return self._score(torch.cat([pooled, cand], dim=-1), batch, self.embed.profile(batch), single)


def take_rows(batch: dict[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    """The rows ``idx`` of every batch tensor (all have the batch as their first dimension)."""
    return {k: v[idx] for k, v in batch.items()}


def with_pooled_history(out: Tensor, pooled: Tensor) -> Tensor:
    """Candidate outputs [B, C, D] beside the row's pooled history [B, D] → [B, C, 2D] (the head's layout)."""
    return torch.cat([out, pooled.unsqueeze(1).expand(-1, out.shape[1], -1)], dim=-1)


def mixer_config(cfg: ModelConfig) -> MixerConfig:
    """The self-attention options of every layer of a sequence model (before per-layer ablations)."""
    return MixerConfig(name=cfg.mixer_name, d_model=cfg.d_model, num_heads=cfg.num_heads, max_len=cfg.seq_len + 1,
                       max_attn_len=cfg.max_attn_len, backend=cfg.backend, options=cfg.mixer_options,
                       position=cfg.position, pos_bias=cfg.position == "relative",
                       sink_beta=cfg.sink_beta, sink_tau=cfg.sink_tau)


def build_model(cfg: ModelConfig, fmap: FeatureMap) -> CTRModel:
    """The one builder: every arch and grade goes through here (and so through one embedding init)."""
    model = PoolingCTR(cfg, fmap) if cfg.arch in ("dnn", "din") else SequenceCTR(cfg, fmap)
    init_embeddings(model, cfg.embedding_init_std)
    return model
