"""The gated delta rule of Gated DeltaNet (Yang et al., 2024), target-aware.

``gated_delta_rule`` is the one dispatch point: ``naive`` (the recurrence token by token, the ground
truth) or ``torch`` (chunked UT-transform form: the fast CPU path and the ONNX export path; see
``README.md``). ``init_state``/``step``/``read`` are the O(1)-per-token recurrent form.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.gated_delta_rule import naive
from suan.ops.gated_delta_rule import torch as torch_path
from suan.ops.gated_delta_rule.naive import init_state, read, step

__all__ = ["gated_delta_rule", "init_state", "read", "step"]


def gated_delta_rule(
    q: Tensor, k: Tensor, v: Tensor, log_alpha: Tensor, beta: Tensor, *, lengths: Tensor,
    num_targets: Tensor | int, backend: str = "auto",
) -> Tensor:
    """``S_t = α_t S_{t-1} (I - β_t k_t k_tᵀ) + β_t v_t k_tᵀ``, ``o_t = S_t q_t``, target-aware.

    History tokens run the recurrence in order; each candidate reads ``S_c q_c`` where ``S_c`` is its own
    write applied to the state after the whole history (never another candidate's).

    Args:
        q, k: [B, H, L, Dk]; k should be L2-normalised (with β in [0, 1] the state then stays bounded).
        v: [B, H, L, Dv].
        log_alpha: [B, H, L] log of the decay gate α, <= 0.
        beta: [B, H, L] write strength β, in [0, 1].
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int for every row) candidates at the end of the valid tokens.
        backend: ``auto`` | ``naive`` | ``torch``. Default: ``auto``.

    Returns:
        [B, H, L, Dv], exactly zero at padded positions.
    """
    chosen = resolve(backend, v, has_triton=False)
    impl = naive.gated_delta_rule if chosen == "naive" else torch_path.gated_delta_rule
    return impl(q, k, v, log_alpha, beta, lengths=lengths, num_targets=as_targets(num_targets, lengths))
