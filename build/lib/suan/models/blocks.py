"""Sequence blocks: SUAN's Unified Attention Block, a pre-norm Transformer block (BST), an HSTU block.

Over a recurrent mixer each block also has a per-user state form (``init_state`` / ``step`` for one
history token / ``candidates``) used by ``suan.models.incremental``; it equals ``forward`` when the
model is built with ``incremental=True`` (SUAN's gate then pools the history causally).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import MixerConfig
from suan.mixers.registry import build_mixer
from suan.models.layer_router import RoutedAttention
from suan.modules.layers import SwiGLU


def stale_source(stale_qk: bool, norm: nn.Module, ctx: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{"qk_source": norm(first layer's input)}`` for the ``stale_qk`` ablation, else ``{}``."""
    return {"qk_source": norm(ctx["first"])} if stale_qk else {}


def _prefixed(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"mixer.{k}": v for k, v in state.items()}


def _unprefixed(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix("mixer."): v for k, v in state.items() if k.startswith("mixer.")}


class CrossAttention(nn.Module):
    """Sequence tokens (queries) attend to user-profile tokens (keys and values), no mask.

    Args:
        d: D. heads: H.
    """

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d, bias=False)
        self.kv = nn.Linear(d, 2 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: Tensor, profile: Tensor) -> Tensor:
        """x [B, L, D], profile [B, P, D] → [B, L, D]."""
        q = rearrange(self.q(x), "b l (h d) -> b h l d", h=self.heads)
        k, v = rearrange(self.kv(profile), "b p (t h d) -> t b h p d", t=2, h=self.heads)
        scores = torch.einsum("bhld,bhpd->bhlp", q, k) / q.shape[-1] ** 0.5  # [B, H, L, P]
        y = torch.einsum("bhlp,bhpd->bhld", torch.softmax(scores, dim=-1), v)  # [B, H, L, D/H]
        return self.out(rearrange(y, "b h l d -> b l (h d)"))


class DualAlignmentGate(nn.Module):
    """Per-channel softmax over two branches, driven by their mean over history tokens.

    The mean runs over history tokens only: including candidates would let candidates scored
    together influence each other. With ``causal`` a history token pools the history up to itself
    (candidates: the whole history), so no token depends on later behaviours (incremental models).
    """

    def __init__(self, d: int, causal: bool = False) -> None:
        super().__init__()
        self.squeeze = nn.Linear(d, max(d // 4, 1))
        self.expand = nn.Linear(max(d // 4, 1), 2 * d)
        self.causal = causal

    def mix(self, a: Tensor, b: Tensor, pooled: Tensor) -> Tensor:
        """a, b, pooled [B, N, D] → [B, N, D]: per-token gates from ``pooled``."""
        logits = self.expand(F.relu(self.squeeze(pooled)))  # [B, N, 2D]
        gates = torch.softmax(rearrange(logits, "b n (t d) -> b n t d", t=2), dim=2)  # [B, N, 2, D]
        return gates[:, :, 0] * a + gates[:, :, 1] * b

    def forward(self, a: Tensor, b: Tensor, history: Tensor) -> Tensor:
        """a, b [B, L, D]; history [B, L] bool → [B, L, D] gated sum."""
        w = history.unsqueeze(-1).to(a.dtype)  # [B, L, 1]
        if self.causal:
            prefix = torch.cumsum((a + b) * w, dim=1) / torch.cumsum(w, dim=1).clamp(min=1.0)  # [B, L, D]
            return self.mix(a, b, prefix)
        pooled = ((a + b) * w).sum(1) / w.sum(1).clamp(min=1.0)  # [B, D]
        logits = self.expand(F.relu(self.squeeze(pooled)))  # [B, 2D]
        gates = torch.softmax(rearrange(logits, "b (t d) -> b t d", t=2), dim=1)  # [B, 2, D]
        return gates[:, 0].unsqueeze(1) * a + gates[:, 1].unsqueeze(1) * b


class UnifiedAttentionBlock(nn.Module):
    """RMSNorm → self-attn → (+res, RMSNorm) → cross-attn to profile → dual gate → +res → RMSNorm → SwiGLU → +res.

    Args:
        mixer: config of the self-attention mixer.
        ffn_mult: SwiGLU width multiplier.
        dropout: dropout on branch outputs.
        layer_router: a per-sample router picks full or sparse self-attention. Default: False.
        causal_gate: the dual gate pools the history causally (incremental models). Default: False.
    """

    def __init__(self, mixer: MixerConfig, ffn_mult: int, dropout: float, layer_router: bool = False,
                 causal_gate: bool = False) -> None:
        super().__init__()
        d = mixer.d_model
        self.norm_self, self.norm_cross, self.norm_ffn = nn.RMSNorm(d), nn.RMSNorm(d), nn.RMSNorm(d)
        self.self_attn = RoutedAttention(mixer) if layer_router else build_mixer(mixer)
        self.stale_qk = mixer.ablate == "stale_qk"
        self.cross_attn = CrossAttention(d, mixer.num_heads)
        self.gate = DualAlignmentGate(d, causal=causal_gate)
        self.ffn = SwiGLU(d, ffn_mult)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: dict[str, Tensor]) -> Tensor:
        s = self.self_attn(self.norm_self(x), lengths=ctx["lengths"], num_targets=ctx["num_targets"],
                           timestamps=ctx["timestamps"], **stale_source(self.stale_qk, self.norm_self, ctx))
        c = self.cross_attn(self.norm_cross(x + s), ctx["profile"])
        x = x + self.drop(self.gate(s, c, ctx["history"]))
        return x + self.drop(self.ffn(self.norm_ffn(x)))

    def init_state(self, batch: int) -> dict[str, Tensor]:
        """Recurrent mixer state (``mixer.*``) and the running sum of both branches over history (``gate_sum``)."""
        d = self.norm_self.weight.shape[0]
        return {**_prefixed(self.self_attn.init_state(batch)),
                "gate_sum": torch.zeros(batch, d, device=self.norm_self.weight.device)}

    def step(self, x_t: Tensor, ts_t: Tensor, ctx: dict[str, Tensor],
             state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One history token (needs ``causal_gate``): x_t [B, D], ts_t [B]; ctx ``profile`` [B, P, D] and
        ``count`` [B] (history tokens including this one) → (output [B, D], new state)."""
        s, mixer = self.self_attn.step(self.norm_self(x_t), ts_t, _unprefixed(state))
        c = self.cross_attn(self.norm_cross(x_t + s).unsqueeze(1), ctx["profile"])[:, 0]  # [B, D]
        gate_sum = state["gate_sum"] + (s + c)
        pooled = gate_sum / ctx["count"].clamp(min=1).unsqueeze(-1).to(x_t.dtype)  # [B, D]
        x = x_t + self.drop(self.gate.mix(s.unsqueeze(1), c.unsqueeze(1), pooled.unsqueeze(1))[:, 0])
        return x + self.drop(self.ffn(self.norm_ffn(x))), {**_prefixed(mixer), "gate_sum": gate_sum}

    def candidates(self, x_c: Tensor, ts_c: Tensor, ctx: dict[str, Tensor], state: dict[str, Tensor]) -> Tensor:
        """Candidate outputs [B, C, D] from x_c [B, C, D], ts_c [B, C] and the state after the history
        (ctx ``count`` [B] = history length)."""
        s = self.self_attn.score_candidates(self.norm_self(x_c), ts_c, _unprefixed(state))
        c = self.cross_attn(self.norm_cross(x_c + s), ctx["profile"])
        pooled = state["gate_sum"] / ctx["count"].clamp(min=1).unsqueeze(-1).to(x_c.dtype)  # [B, D]
        x = x_c + self.drop(self.gate.mix(s, c, pooled.unsqueeze(1).expand_as(s)))
        return x + self.drop(self.ffn(self.norm_ffn(x)))


class AuthorsAttentionBlock(nn.Module):
    """SUAN's block as the authors' code wires it (laiweijiang/SUAN ``handle_rec_unit.py``, ``SUAN_Block``).

    ``x = RMSNorm(x)`` → ``x = RMSNorm(x + self-attn(x))`` → ``c = cross-attn(x, profile)`` →
    ``x = RMSNorm(x + gate(x, c))`` → ``x + SwiGLU(x)``. The dual gate mixes the residual stream itself with
    the cross branch (softmax over the two per channel, driven by their mean over history tokens) and the
    stream is added back, so self-attention can never be gated off; in :class:`UnifiedAttentionBlock` the
    gate mixes the two branch outputs and can suppress self-attention per channel.

    Args: as :class:`UnifiedAttentionBlock`.
    """

    def __init__(self, mixer: MixerConfig, ffn_mult: int, dropout: float, layer_router: bool = False,
                 causal_gate: bool = False) -> None:
        super().__init__()
        d = mixer.d_model
        self.norm_in, self.norm_self, self.norm_cross = nn.RMSNorm(d), nn.RMSNorm(d), nn.RMSNorm(d)
        self.self_attn = RoutedAttention(mixer) if layer_router else build_mixer(mixer)
        self.stale_qk = mixer.ablate == "stale_qk"
        self.cross_attn = CrossAttention(d, mixer.num_heads)
        self.gate = DualAlignmentGate(d, causal=causal_gate)
        self.ffn = SwiGLU(d, ffn_mult)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: dict[str, Tensor]) -> Tensor:
        x = self.norm_in(x)
        s = self.self_attn(x, lengths=ctx["lengths"], num_targets=ctx["num_targets"], timestamps=ctx["timestamps"],
                           **stale_source(self.stale_qk, self.norm_in, ctx))
        x = self.norm_self(x + self.drop(s))
        c = self.cross_attn(x, ctx["profile"])
        x = self.norm_cross(x + self.drop(self.gate(x, c, ctx["history"])))
        return x + self.drop(self.ffn(x))

    def init_state(self, batch: int) -> dict[str, Tensor]:
        """Recurrent mixer state (``mixer.*``) and the running sum of stream + cross over history (``gate_sum``)."""
        d = self.norm_in.weight.shape[0]
        return {**_prefixed(self.self_attn.init_state(batch)),
                "gate_sum": torch.zeros(batch, d, device=self.norm_in.weight.device)}

    def step(self, x_t: Tensor, ts_t: Tensor, ctx: dict[str, Tensor],
             state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One history token, as :meth:`UnifiedAttentionBlock.step`."""
        x = self.norm_in(x_t)
        s, mixer = self.self_attn.step(x, ts_t, _unprefixed(state))
        x = self.norm_self(x + self.drop(s))
        c = self.cross_attn(x.unsqueeze(1), ctx["profile"])[:, 0]  # [B, D]
        gate_sum = state["gate_sum"] + (x + c)
        pooled = gate_sum / ctx["count"].clamp(min=1).unsqueeze(-1).to(x.dtype)  # [B, D]
        x = self.norm_cross(x + self.drop(self.gate.mix(x.unsqueeze(1), c.unsqueeze(1), pooled.unsqueeze(1))[:, 0]))
        return x + self.drop(self.ffn(x)), {**_prefixed(mixer), "gate_sum": gate_sum}

    def candidates(self, x_c: Tensor, ts_c: Tensor, ctx: dict[str, Tensor], state: dict[str, Tensor]) -> Tensor:
        """Candidate outputs [B, C, D], as :meth:`UnifiedAttentionBlock.candidates`."""
        x = self.norm_in(x_c)
        x = self.norm_self(x + self.drop(self.self_attn.score_candidates(x, ts_c, _unprefixed(state))))
        c = self.cross_attn(x, ctx["profile"])
        pooled = state["gate_sum"] / ctx["count"].clamp(min=1).unsqueeze(-1).to(x.dtype)  # [B, D]
        x = self.norm_cross(x + self.drop(self.gate.mix(x, c, pooled.unsqueeze(1).expand_as(x))))
        return x + self.drop(self.ffn(x))


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block (BST): LayerNorm → mixer → +res → LayerNorm → GELU FFN → +res."""

    def __init__(self, mixer: MixerConfig, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        d = mixer.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = build_mixer(mixer)
        self.stale_qk = mixer.ablate == "stale_qk"
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Linear(ffn_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: dict[str, Tensor]) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), lengths=ctx["lengths"], num_targets=ctx["num_targets"],
                                    timestamps=ctx["timestamps"], **stale_source(self.stale_qk, self.norm1, ctx)))
        return x + self.drop(self.ffn(self.norm2(x)))

    def init_state(self, batch: int) -> dict[str, Tensor]:
        return _prefixed(self.attn.init_state(batch))

    def step(self, x_t: Tensor, ts_t: Tensor, ctx: dict[str, Tensor],
             state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        y, mixer = self.attn.step(self.norm1(x_t), ts_t, _unprefixed(state))
        x = x_t + self.drop(y)
        return x + self.drop(self.ffn(self.norm2(x))), _prefixed(mixer)

    def candidates(self, x_c: Tensor, ts_c: Tensor, ctx: dict[str, Tensor], state: dict[str, Tensor]) -> Tensor:
        x = x_c + self.drop(self.attn.score_candidates(self.norm1(x_c), ts_c, _unprefixed(state)))
        return x + self.drop(self.ffn(self.norm2(x)))


class HSTUBlock(nn.Module):
    """HSTU layer: ``x + HSTUAttention(RMSNorm(x))`` (the U gate replaces the FFN)."""

    def __init__(self, mixer: MixerConfig, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(mixer.d_model)
        self.attn = build_mixer(mixer)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: dict[str, Tensor]) -> Tensor:
        return x + self.drop(self.attn(self.norm(x), lengths=ctx["lengths"], num_targets=ctx["num_targets"],
                                       timestamps=ctx["timestamps"]))

    def init_state(self, batch: int) -> dict[str, Tensor]:
        return _prefixed(self.attn.init_state(batch))

    def step(self, x_t: Tensor, ts_t: Tensor, ctx: dict[str, Tensor],
             state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        y, mixer = self.attn.step(self.norm(x_t), ts_t, _unprefixed(state))
        return x_t + self.drop(y), _prefixed(mixer)

    def candidates(self, x_c: Tensor, ts_c: Tensor, ctx: dict[str, Tensor], state: dict[str, Tensor]) -> Tensor:
        return x_c + self.drop(self.attn.score_candidates(self.norm(x_c), ts_c, _unprefixed(state)))


BLOCKS = {"suan": UnifiedAttentionBlock, "lightsuan": UnifiedAttentionBlock, "bst": TransformerBlock,
          "hstu": HSTUBlock}
# the unified blocks' two wirings (``ModelConfig.wiring``)
UNIFIED_WIRINGS = {"branches": UnifiedAttentionBlock, "authors": AuthorsAttentionBlock}
