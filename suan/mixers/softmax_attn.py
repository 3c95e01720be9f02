"""Multi-head softmax self-attention with the relative-position + time bias (SUAN), RoPE, or none (BST).

Options (``MixerConfig``; every default is plain attention through the fast op):

- ``position``: ``relative`` (learned Toeplitz bias, when ``pos_bias``), ``rope`` (rotary q/k by token
  position; candidates sit at ``n_hist``), ``none``.
- ``sink_beta < 1``: training-free sink calibration (``suan.ops.calibrated_attention``).
- ``ablate``: ``fixed`` (a learned [P, P] mixing matrix indexed by the recency of query and key, the same
  for every sequence), ``seqfree`` (per-head weights over the position gap only), ``stale_qk`` (queries and
  keys projected from ``qk_source``, the first layer's input, which the block passes in).
- ``recorder``: when an object with ``record(probs, *, mask, lengths, num_targets, timestamps)`` is attached
  (``suan.analysis.record.record_attention`` does it), every forward also hands it the [B, H, L, L]
  probabilities computed with the reference math; the output does not change.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.calibrated_attention import attention_probs, calibrated_attention
from suan.ops.common.masks import (
    TIME_BUCKETS,
    as_targets,
    attention_mask,
    default_scale,
    lookup,
    positions,
    relative_bias,
)
from suan.ops.common.precision import at_least_fp32
from suan.ops.common.rope import apply_rope, rope_tables
from suan.ops.rel_attention import rel_attention


class SoftmaxAttention(Mixer):
    """Causal, target-aware softmax attention; biases are shared across heads.

    Args:
        cfg: :class:`MixerConfig`; ``pos_bias``/``time_bias`` switch the learned biases, ``position``,
            ``sink_beta``/``sink_tau`` and ``ablate`` as in the module docstring.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, content = cfg.d_model, cfg.ablate not in ("fixed", "seqfree")
        # the content-free ablations mix values only: no query/key projection and no biases to train
        self.qkv = nn.Linear(d, (3 if content else 1) * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        relative = content and cfg.pos_bias and cfg.position == "relative"
        self.pos_bias = nn.Parameter(torch.zeros(cfg.max_len + 1)) if relative else None
        self.time_bias = nn.Parameter(torch.zeros(TIME_BUCKETS)) if content and cfg.time_bias else None
        self.mix = None
        if cfg.ablate == "fixed":
            self.mix = nn.Parameter(torch.zeros(cfg.max_len, cfg.max_len))
        elif cfg.ablate == "seqfree":
            self.mix = nn.Parameter(torch.zeros(cfg.num_heads, cfg.max_len))
        self.recorder: Any = None

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                qk_source: Tensor | None = None) -> Tensor:
        """x [B, L, D] (qk_source [B, L, D] for ``stale_qk``) → [B, L, D]."""
        q, k, v = self._project(x, qk_source, lengths, num_targets)  # [B, H, L, D/H] each (q, k None: no content)
        if self.mix is not None or self.cfg.sink_beta < 1:
            num_targets = as_targets(num_targets, lengths)
            logits = self._logits(q, k, lengths, num_targets, timestamps)  # [B, H, L, L]
            # the explicit-probability op has no Triton path: auto resolves to torch, triton is refused by the config
            y = calibrated_attention(logits, v, mask=self.key_mask(lengths, num_targets, x.shape[1]), lengths=lengths,
                                     num_targets=num_targets, beta=self.cfg.sink_beta, tau=self.cfg.sink_tau,
                                     backend=self.cfg.backend)
        else:
            y = self._attend(q, k, v, lengths, num_targets, timestamps)  # [B, H, L, D/H]
        if self.recorder is not None:
            num_targets = as_targets(num_targets, lengths)
            probs = self.attention_probs(x, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                                         qk_source=qk_source)
            self.recorder.record(probs, mask=self.key_mask(lengths, num_targets, x.shape[1]), lengths=lengths,
                                 num_targets=num_targets, timestamps=timestamps)
        # an explicit copy before merging heads: the dynamo ONNX exporter's passes see SDPA outputs with
        # different strides, drop a `.contiguous()` as a no-op in one and then fail the merging `view`
        y = rearrange(y, "b h l d -> b l h d").clone(memory_format=torch.contiguous_format)
        return self.out(rearrange(y, "b l h d -> b l (h d)"))

    def attention_probs(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
                        qk_source: Tensor | None = None) -> Tensor:
        """The attention probabilities of ``forward`` with the reference math (fp32, calibrated if configured).

        Returns:
            [B, H, L, L] (queries x keys), rows of valid queries sum to 1, padded query rows are 0.
        """
        num_targets = as_targets(num_targets, lengths)
        q, k, _ = self._project(x, qk_source, lengths, num_targets)
        return attention_probs(self._logits(q, k, lengths, num_targets, timestamps),
                               mask=self.key_mask(lengths, num_targets, x.shape[1]), lengths=lengths,
                               num_targets=num_targets, beta=self.cfg.sink_beta, tau=self.cfg.sink_tau,
                               backend="naive")

    def _project(self, x: Tensor, qk_source: Tensor | None, lengths: Tensor,
                 num_targets: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor]:
        heads = self.cfg.num_heads
        if self.mix is not None:
            return None, None, rearrange(self.qkv(x), "b l (h d) -> b h l d", h=heads)
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=heads)
        if self.cfg.ablate == "stale_qk":
            if qk_source is None:
                raise ValueError("ablate='stale_qk' needs qk_source (the first layer's input)")
            q, k, _ = rearrange(self.qkv(qk_source), "b l (t h d) -> t b h l d", t=3, h=heads)
        if self.cfg.position == "rope":
            pos = positions(lengths, as_targets(num_targets, lengths), x.shape[1])  # [B, L]
            cos, sin = rope_tables(pos, q.shape[-1])  # [B, 1, L, D/H]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def key_mask(self, lengths: Tensor, num_targets: Tensor, seq_len: int) -> Tensor:
        """[B, L, L] bool: which keys each query may attend to."""
        return attention_mask(lengths, num_targets, seq_len, self.cfg.max_attn_len)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, num_targets: Tensor,
                timestamps: Tensor) -> Tensor:
        """The fast op for plain attention → [B, H, L, D/H]."""
        return rel_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                             pos_bias=self.pos_bias, time_bias=self.time_bias,
                             max_attn_len=self.cfg.max_attn_len, backend=self.cfg.backend)

    def _logits(self, q: Tensor | None, k: Tensor | None, lengths: Tensor, num_targets: Tensor,
                timestamps: Tensor) -> Tensor:
        """Pre-mask attention scores [B, H, L, L] in fp32."""
        B, L = timestamps.shape
        heads, pos = self.cfg.num_heads, positions(lengths, num_targets, L)  # [B, L]
        if self.cfg.ablate == "fixed":
            size = self.cfg.max_len
            recency = ((lengths - num_targets).unsqueeze(1) - pos).clamp(0, size - 1)  # [B, L], candidates 0
            index = recency.unsqueeze(2) * size + recency.unsqueeze(1)  # [B, L, L] (query, key)
            return at_least_fp32(lookup(self.mix.reshape(-1), index)).unsqueeze(1).expand(B, heads, L, L)
        if self.cfg.ablate == "seqfree":
            size = self.cfg.max_len
            gap = (pos.unsqueeze(2) - pos.unsqueeze(1)).clamp(0, size - 1).unsqueeze(1)  # [B, 1, L, L]
            head_row = (torch.arange(heads, device=gap.device) * size).view(1, heads, 1, 1)
            return at_least_fp32(lookup(self.mix.reshape(-1), gap + head_row))  # [B, H, L, L]
        q, k = at_least_fp32(q), at_least_fp32(k)
        scores = torch.einsum("bhid,bhjd->bhij", q, k) * default_scale(q.shape[-1])  # [B, H, L, L]
        bias = relative_bias(lengths, num_targets, timestamps, self.pos_bias, self.time_bias)
        return scores if bias is None else scores + at_least_fp32(bias).unsqueeze(1)
