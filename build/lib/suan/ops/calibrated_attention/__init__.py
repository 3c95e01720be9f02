"""Softmax attention over explicit logits with training-free attention-sink calibration (ACT-style).

``calibrated_attention`` (outputs) and ``attention_probs`` (the [B, H, L, L] probabilities) are the
dispatch points: ``naive`` (fp32, Python loops over rows and heads: the ground truth) or ``torch``
(vectorised: the CPU and ONNX path). Mixers use this op when their probabilities must be explicit:
sink calibration, the ``fixed``/``seqfree`` ablations, and attention recording.

Calibration (Yu et al., 2024, "Unveiling and Harnessing Hidden Attention Sinks"): per row and head, a
history key j is a sink when its mean attention from the ``n`` history queries is at least ``tau / n``
(``tau`` times the uniform share). Every query's attention to sink keys is multiplied by ``beta`` and the
removed mass is added to its other allowed keys in proportion to their attention, so rows still sum to 1,
masked keys stay 0, and ``beta = 1`` returns the probabilities unchanged. Candidates are never sinks and
never influence the detection (only history queries count), so candidate isolation holds.
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.calibrated_attention import naive
from suan.ops.calibrated_attention import torch as torch_path
from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets

__all__ = ["attention_probs", "calibrated_attention"]


def attention_probs(
    logits: Tensor, *, mask: Tensor, lengths: Tensor, num_targets: Tensor | int, beta: float = 1.0,
    tau: float = 5.0, backend: str = "auto",
) -> Tensor:
    """Masked softmax probabilities, sink-calibrated when ``beta < 1``.

    Args:
        logits: [B, H, L, L] attention scores (queries x keys) before the mask.
        mask: [B, L, L] bool, True = attend (every row must allow at least one key).
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int) candidates at the end of the valid tokens.
        beta: factor on sink attention, in [0, 1]; 1 = no calibration. Default: 1.0.
        tau: sink threshold in multiples of the uniform share ``1 / n_hist``. Default: 5.0.
        backend: ``auto`` | ``naive`` | ``torch``. Default: ``auto``.

    Returns:
        [B, H, L, L], rows of valid queries sum to 1, padded query rows are 0.
    """
    chosen = resolve(backend, logits, has_triton=False)
    impl = naive.attention_probs if chosen == "naive" else torch_path.attention_probs
    return impl(logits, mask=mask, lengths=lengths, num_targets=as_targets(num_targets, lengths), beta=beta, tau=tau)


def calibrated_attention(
    logits: Tensor, v: Tensor, *, mask: Tensor, lengths: Tensor, num_targets: Tensor | int, beta: float = 1.0,
    tau: float = 5.0, backend: str = "auto",
) -> Tensor:
    """``attention_probs(...) @ v``.

    Args:
        logits: [B, H, L, L]; v: [B, H, L, D]; the rest as in :func:`attention_probs`.

    Returns:
        [B, H, L, D], zero at padded positions.
    """
    chosen = resolve(backend, logits, has_triton=False)
    impl = naive.calibrated_attention if chosen == "naive" else torch_path.calibrated_attention
    return impl(logits, v, mask=mask, lengths=lengths, num_targets=as_targets(num_targets, lengths), beta=beta,
                tau=tau)
