"""Gated DeltaNet (Yang et al., 2024): a delta-rule state with a data-dependent decay, O(1) per token.

``S_t = α_t S_{t-1} (I - β_t k_t k_tᵀ) + β_t v_t k_tᵀ`` per head with L2-normalised q, k,
``α_t = exp(-softplus(w_α·x_t + b_α))`` and ``β_t = sigmoid(w_β·x_t + b_β)``; the read ``S_t q_t`` goes
through a per-head RMSNorm and a SiLU output gate (as in the paper's block, without the short
convolution). A candidate reads its own write applied to the state after the whole history.

Training and ONNX export run ``gated_delta_rule``'s chunked form: in each 16-token chunk the UT transform
is solved by forward substitution (a fixed 16 steps), and the chunk-to-chunk state map runs as a Python
loop over chunks in eager mode and as a ``scan`` higher-order op (ONNX ``Scan`` with a data-dependent trip
count, so batch and length stay dynamic) under export. Serving can append history tokens one at a time
to the [H, D/H, D/H] state (:class:`~suan.mixers.base.RecurrentMixer`). The relative-position and time
biases, ``max_attn_len`` and ``timestamps`` are not used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.precision import working_dtype
from suan.ops.gated_delta_rule import gated_delta_rule, init_state, read, step

# per-head decay rates -log(α) at initialisation, log-spaced: memories from ~2 to ~100 tokens
DECAY_RANGE = (0.01, 0.5)


def decay_bias(num_heads: int) -> Tensor:
    """Biases ``b`` with ``softplus(b)`` log-spaced over ``DECAY_RANGE``: [H]."""
    rates = torch.logspace(math.log10(DECAY_RANGE[0]), math.log10(DECAY_RANGE[1]), num_heads)
    return torch.log(torch.expm1(rates))


class GatedDeltaNet(Mixer):
    """``W_o(RMSNorm(gated_delta_rule(q, k, v, α, β)) * SiLU(W_g x))``, multi-head.

    Args:
        cfg: :class:`MixerConfig`.
    """

    state_grows = False

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.head_dim = cfg.d_model // cfg.num_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.gates = nn.Linear(cfg.d_model, 2 * cfg.num_heads)
        with torch.no_grad():
            self.gates.bias[:cfg.num_heads] = decay_bias(cfg.num_heads)
        self.out_gate = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.norm = nn.RMSNorm(self.head_dim)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x [B, L, D] → q, k, v [B, H, L, D/H]; log α, β [B, H, L]."""
        q, k, v = rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)
        q = F.normalize(q, dim=-1) * self.head_dim ** -0.5
        a, b = rearrange(self.gates(x), "b l (t h) -> t b h l", t=2)
        return q, F.normalize(k, dim=-1), v, -F.softplus(a), torch.sigmoid(b)

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        """o [B, H, L, D/H], x [B, L, D] → [B, L, D]."""
        o = rearrange(self.norm(o.to(x.dtype)), "b h l d -> b l (h d)")
        return self.out(o * F.silu(self.out_gate(x)))

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        o = gated_delta_rule(*self._project(x), lengths=lengths, num_targets=num_targets,
                             backend=self.cfg.backend)  # [B, H, L, D/H]
        return self._output(o, x)

    def init_state(self, batch: int) -> dict[str, Tensor]:
        return init_state(batch, self.cfg.num_heads, self.head_dim, self.head_dim, self.qkv.weight.device,
                          working_dtype(self.qkv.weight))

    def step(self, x_t: Tensor, timestamp_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x = x_t.unsqueeze(1)  # [B, 1, D]
        o, state = step(state, *(t[:, :, 0] for t in self._project(x)))  # [B, H, D/H]
        return self._output(o.unsqueeze(2), x)[:, 0], state

    def score_candidates(self, x_c: Tensor, timestamps_c: Tensor, state: dict[str, Tensor]) -> Tensor:
        return self._output(read(state, *self._project(x_c)), x_c)
