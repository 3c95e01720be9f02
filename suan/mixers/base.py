"""The mixer contract and its config.

A mixer maps ``x [B, L, D]`` to ``[B, L, D]`` over a right-padded, target-aware sequence:
``lengths [B]`` valid tokens, of which the last ``num_targets [B]`` are candidates that see the
history and themselves only; ``timestamps [B, L]`` int64. Outputs at padded positions are zero.

A mixer with a recurrent form also implements :class:`RecurrentMixer` (and is registered with
``recurrent=True``): history tokens are appended one at a time to a per-user state, and candidates are
scored from it; the contract test checks that this equals the full forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from torch import Tensor, nn

from suan.config import TRITON_NEEDS_NO_PROBS
from suan.mixers.options import MixerOptions
from suan.ops.common.backend import BACKENDS
from suan.utils.config import Config, require


@dataclass(frozen=True, kw_only=True, slots=True)
class MixerConfig(Config):
    """Options every mixer understands.

    Args:
        name: registry name of the mixer.
        d_model: D.
        num_heads: H (D must divide by it).
        max_len: the most positions a sequence may have (sizes the position bias). Default: 256.
        max_attn_len: local window in positions, 0 = unlimited. Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.
        pos_bias: learned relative-position bias. Default: True.
        time_bias: learned log time-gap bucket bias. Default: True.
        options: the mixer's own settings, an instance of its ``Mixer.options`` class (the base
            :class:`MixerOptions` = that mixer's defaults). Default: ``MixerOptions()``.
        position: ``relative`` (learned bias when ``pos_bias``) | ``rope`` (rotary q/k by token position) |
            ``none`` (softmax mixers). Default: relative.
        sink_beta: inference-time sink calibration factor, 1.0 = off (softmax mixers). Default: 1.0.
        sink_tau: sink threshold: mean attention from history queries >= tau / n_hist. Default: 5.0.
        ablate: ``""`` | ``fixed`` | ``seqfree`` | ``stale_qk`` deconstruction ablation (softmax mixers).
            Default: "".
    """

    name: str
    d_model: int
    num_heads: int
    max_len: int = 256
    max_attn_len: int = 0
    backend: str = "auto"
    pos_bias: bool = True
    time_bias: bool = True
    options: MixerOptions = field(default_factory=MixerOptions)
    position: str = "relative"
    sink_beta: float = 1.0
    sink_tau: float = 5.0
    ablate: str = ""

    def validate(self) -> None:
        require(self.d_model > 0 and self.num_heads > 0, "d_model and num_heads must be positive")
        require(self.d_model % self.num_heads == 0, f"d_model {self.d_model} must divide by num_heads {self.num_heads}")
        require(self.max_len >= 1 and self.max_attn_len >= 0, "max_len >= 1 and max_attn_len >= 0")
        require(self.backend in BACKENDS, f"backend must be one of {BACKENDS}")
        require(self.position in ("relative", "rope", "none"), "position must be relative, rope or none")
        require(self.position != "rope" or (self.d_model // self.num_heads) % 2 == 0, "rope needs an even head dim")
        require(0 <= self.sink_beta <= 1 and self.sink_tau > 0, "sink_beta must be in [0, 1] and sink_tau > 0")
        require(self.ablate in ("", "fixed", "seqfree", "stale_qk"), "ablate must be '', fixed, seqfree or stale_qk")
        require(self.backend != "triton" or (self.sink_beta == 1 and self.ablate not in ("fixed", "seqfree")),
                TRITON_NEEDS_NO_PROBS)


class Mixer(nn.Module):
    """Base class: subclasses implement ``forward`` with this signature.

    ``options`` is the dataclass of the mixer's own settings (none by default), read as ``cfg.options``.
    """

    options: ClassVar[type[MixerOptions]] = MixerOptions

    def forward(self, x: Tensor, *, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        raise NotImplementedError


@runtime_checkable
class RecurrentMixer(Protocol):
    """Incremental form of a mixer: ``forward`` over ``[history, candidates]`` equals ``step`` over each
    history token in order followed by ``score_candidates``. Every row of the batch advances together.

    ``state_grows`` is False when the state has a size independent of the history length (O(1) time and
    memory per appended token), True when it keeps per-token entries (e.g. a softmax key/value cache).
    """

    state_grows: ClassVar[bool]

    def init_state(self, batch: int) -> dict[str, Tensor]:
        """The state of ``batch`` empty histories (on the mixer's device)."""
        ...

    def step(self, x_t: Tensor, timestamp_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Append one history token: ``x_t`` [B, D], ``timestamp_t`` [B] int64 → (``y_t`` [B, D], new state).

        ``y_t`` is the output ``forward`` gives that token; the input state is not modified.
        """
        ...

    def score_candidates(self, x_c: Tensor, timestamps_c: Tensor, state: dict[str, Tensor]) -> Tensor:
        """Candidate outputs [B, N, D] from ``x_c`` [B, N, D], ``timestamps_c`` [B, N] and the history state."""
        ...
