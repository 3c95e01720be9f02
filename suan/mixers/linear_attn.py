"""Causal linear attention (Katharopoulos et al., 2020): ``elu + 1`` feature map, normalised.

Training runs the chunked parallel form; serving can append history tokens one at a time to an O(1)
state ``(S = Σ φ(k) vᵀ, z = Σ φ(k))`` per head (:class:`~suan.mixers.base.RecurrentMixer`). A candidate
reads the whole history plus itself. The relative-position and time biases, ``max_attn_len`` and
``timestamps`` are not used.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig
from suan.ops.common.precision import working_dtype
from suan.ops.linear_attention import init_state, linear_attention, read, step


class LinearAttention(Mixer):
    """``W_o(linear_attention(Q, K, V))``, multi-head.

    Args:
        cfg: :class:`MixerConfig`.
    """

    state_grows = False

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.head_dim = cfg.d_model // cfg.num_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def _qkv(self, x: Tensor) -> Tensor:
        """x [B, L, D] → [3, B, H, L, D/H]."""
        return rearrange(self.qkv(x), "b l (t h d) -> t b h l d", t=3, h=self.cfg.num_heads)

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        q, k, v = self._qkv(x)
        y = linear_attention(q, k, v, lengths=lengths, num_targets=num_targets,
                             backend=self.cfg.backend)  # [B, H, L, D/H]
        return self.out(rearrange(y, "b h l d -> b l (h d)"))

    def init_state(self, batch: int) -> dict[str, Tensor]:
        return init_state(batch, self.cfg.num_heads, self.head_dim, self.head_dim, self.qkv.weight.device,
                          working_dtype(self.qkv.weight))

    def step(self, x_t: Tensor, timestamp_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        q, k, v = self._qkv(x_t.unsqueeze(1))[:, :, :, 0]  # 3 x [B, H, D/H]
        o, state = step(state, q, k, v)
        return self.out(rearrange(o, "b h d -> b (h d)").to(x_t.dtype)), state

    def score_candidates(self, x_c: Tensor, timestamps_c: Tensor, state: dict[str, Tensor]) -> Tensor:
        q, k, v = self._qkv(x_c)
        return self.out(rearrange(read(state, q, k, v), "b h n d -> b n (h d)").to(x_c.dtype))
