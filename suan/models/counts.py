"""Parameter and FLOP counts: measured on a module, and computed from the config for SUAN.

Embedding parameters are the weights of ``nn.Embedding`` tables (feature, position and time
embeddings); everything else is dense. FLOPs are forward matmul FLOPs per sample (2 per
multiply-add) for one candidate and a full-length history, as the dense reference path executes
them (attention over all L x L pairs), which is what ``torch.utils.flop_counter`` counts.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from features.schema import FeatureMap, Role
from suan.config import ModelConfig, mixer_spec, parse_ablate
from suan.ops.common.masks import TIME_BUCKETS


def count_params(model: nn.Module) -> dict[str, int]:
    """Measured ``{"dense", "embedding", "head", "encoder"}``: dense = head (the MLP over the features) +
    encoder (everything else that is not an embedding table), the model-size axis of scaling laws."""
    emb = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out = {"dense": 0, "embedding": 0}
    for p in model.parameters():
        out["embedding" if id(p) in emb else "dense"] += p.numel()
    head = getattr(model, "head", None)
    out["head"] = sum(p.numel() for p in head.parameters()) if head is not None else 0
    out["encoder"] = out["dense"] - out["head"]
    return out


def example_batch(fmap: FeatureMap, seq_len: int, batch: int = 1) -> dict[str, torch.Tensor]:
    """A batch of ``batch`` samples with full-length histories of valid ids (for counting, export)."""
    out: dict[str, torch.Tensor] = {}
    for f in (*fmap.by_role(Role.USER), *fmap.by_role(Role.CONTEXT), *fmap.by_role(Role.TARGET)):
        out[f.name] = torch.full((batch,), min(2, f.vocab_size - 1), dtype=torch.int64)
    for f in fmap.by_role(Role.SEQ):
        out[f.name] = torch.full((batch, seq_len), min(2, f.vocab_size - 1), dtype=torch.int64)
    out["hist_ts"] = torch.arange(seq_len, dtype=torch.int64).repeat(batch, 1) * 3600
    out["hist_len"] = torch.full((batch,), seq_len, dtype=torch.int64)
    out["target_ts"] = torch.full((batch,), seq_len * 3600, dtype=torch.int64)
    out["dense"] = torch.zeros(batch, len(fmap.by_role(Role.DENSE)))
    out["label"] = torch.zeros(batch)
    return out


def measure_flops(model: nn.Module, fmap: FeatureMap, seq_len: int) -> int:
    """Forward FLOPs of one sample, counted by ``FlopCounterMode`` in eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example_batch(fmap, seq_len))
    model.train(was_training)
    return int(counter.get_total_flops())


def suan_params(cfg: ModelConfig, fmap: FeatureMap) -> dict[str, int]:
    """Dense and embedding parameters of a SUAN model, from the config alone."""
    d, L = cfg.d_model, cfg.seq_len
    sizes = fmap.vocab_sizes()
    seq_vocabs = {f.vocab for f in fmap.by_role(Role.SEQ)}
    from suan.models.inputs import split_width

    widths = dict(zip([f.vocab for f in fmap.by_role(Role.SEQ)], split_width(d, len(seq_vocabs)), strict=True))
    emb = sum(sizes[v] * widths[v] for v in seq_vocabs)
    emb += sum(sizes[f.vocab] * d for f in fmap.by_role(Role.USER))
    emb += sum(sizes[f.vocab] * cfg.context_dim for f in fmap.by_role(Role.CONTEXT))
    emb += (L + 1) * d + TIME_BUCKETS * d  # position and time embeddings
    r = max(d // 4, 1)
    per_layer = (3 * d  # three RMSNorm weights
                 + 4 * d * d  # cross-attention q, k, v, out
                 + d * r + r + r * 2 * d + 2 * d  # dual alignment gate
                 + 3 * cfg.ffn_mult * d * d)  # SwiGLU
    ablations = parse_ablate(cfg.ablate, cfg.num_layers)
    dense = sum(per_layer + self_attention_params(cfg, ablations.get(i, "")) for i in range(cfg.num_layers))
    dense += 3 * d * d + d if cfg.head == "histograph" else 0  # layer key + query, token query + key
    head_in = d * (1 + cfg.candidate_in_head + cfg.pool_history + cfg.pool_inputs) + len(fmap.by_role(Role.USER)) * d \
        + len(fmap.by_role(Role.CONTEXT)) * cfg.context_dim + len(fmap.by_role(Role.DENSE))
    head = 2 * head_in  # input BatchNorm
    prev = head_in
    for w in cfg.head_widths:
        head += prev * w + w + w  # Linear + Dice alpha
        prev = w
    head += prev + 1
    encoder = dense + d  # the blocks, the final norm (and a histograph readout)
    return {"dense": encoder + head, "embedding": emb, "head": head, "encoder": encoder}


def self_attention_params(cfg: ModelConfig, ablate: str = "") -> int:
    """Parameters of one layer's self-attention (softmax-family mixers, layer router, ablations)."""
    d, P = cfg.d_model, cfg.seq_len + 1  # P: the mixer's max_len
    if ablate == "fixed":
        return 2 * d * d + P * P  # value + out projections, [P, P] mixing matrix
    if ablate == "seqfree":
        return 2 * d * d + cfg.num_heads * P  # value + out projections, per-head weights over gaps
    defaults = mixer_spec(cfg.mixer_name).defaults  # what the registry name implies (plain softmax: no biases)
    relative = cfg.position == "relative" and defaults.get("pos_bias", True)
    time = defaults.get("time_bias", True)
    one = 4 * d * d + (P + 1) * relative + TIME_BUCKETS * time  # qkv + out projections, position and time bias
    return 2 * one + 2 * d + 2 if cfg.layer_router else one  # full + sparse branches, router Linear(D, 2)


def suan_flops(cfg: ModelConfig, fmap: FeatureMap) -> int:
    """Forward matmul FLOPs per sample of SUAN (T = seq_len + 1 tokens, P profile tokens)."""
    d, T = cfg.d_model, cfg.seq_len + 1
    P = len(fmap.by_role(Role.USER))
    r = max(d // 4, 1)
    self_attn = 2 * T * d * 3 * d + 4 * T * T * d + 2 * T * d * d
    cross = 2 * T * d * d + 2 * P * d * 2 * d + 4 * T * P * d + 2 * T * d * d
    gate = 2 * d * r + 2 * r * 2 * d
    ffn = 3 * 2 * T * d * cfg.ffn_mult * d
    head_in = d * (1 + cfg.candidate_in_head + cfg.pool_history + cfg.pool_inputs) + P * d + len(fmap.by_role(Role.CONTEXT)) * cfg.context_dim \
        + len(fmap.by_role(Role.DENSE))
    head, prev = 0, head_in
    for w in (*cfg.head_widths, 1):
        head += 2 * prev * w
        prev = w
    return cfg.num_layers * (self_attn + cross + gate + ffn) + head
