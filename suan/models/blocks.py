"""Sequence blocks: SUAN's Unified Attention Block, a pre-norm Transformer block (BST), an HSTU block."""

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
    together influence each other.
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        self.squeeze = nn.Linear(d, max(d // 4, 1))
        self.expand = nn.Linear(max(d // 4, 1), 2 * d)

    def forward(self, a: Tensor, b: Tensor, history: Tensor) -> Tensor:
        """a, b [B, L, D]; history [B, L] bool → [B, L, D] gated sum."""
        w = history.unsqueeze(-1).to(a.dtype)  # [B, L, 1]
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
    """

    def __init__(self, mixer: MixerConfig, ffn_mult: int, dropout: float, layer_router: bool = False) -> None:
        super().__init__()
        d = mixer.d_model
        self.norm_self, self.norm_cross, self.norm_ffn = nn.RMSNorm(d), nn.RMSNorm(d), nn.RMSNorm(d)
        self.self_attn = RoutedAttention(mixer) if layer_router else build_mixer(mixer)
        self.stale_qk = mixer.ablate == "stale_qk"
        self.cross_attn = CrossAttention(d, mixer.num_heads)
        self.gate = DualAlignmentGate(d)
        self.ffn = SwiGLU(d, ffn_mult)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: dict[str, Tensor]) -> Tensor:
        s = self.self_attn(self.norm_self(x), lengths=ctx["lengths"], num_targets=ctx["num_targets"],
                           timestamps=ctx["timestamps"], **stale_source(self.stale_qk, self.norm_self, ctx))
        c = self.cross_attn(self.norm_cross(x + s), ctx["profile"])
        x = x + self.drop(self.gate(s, c, ctx["history"]))
        return x + self.drop(self.ffn(self.norm_ffn(x)))


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


BLOCKS = {"suan": UnifiedAttentionBlock, "lightsuan": UnifiedAttentionBlock, "bst": TransformerBlock,
          "hstu": HSTUBlock}
