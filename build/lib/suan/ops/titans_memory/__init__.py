"""Titans-style neural memory with a linear memory: a test-time gradient step per token on the surprise
``||M k - v||²`` with momentum and decay, read by every query.

``titans_memory`` is the one dispatch point: ``naive`` (the recurrence itself, a Python loop over
positions: the ground truth) or ``torch`` (its closed form, an O(L²) masked product: the fast CPU path
and the ONNX path).
"""

from __future__ import annotations

from torch import Tensor

from suan.ops.common.backend import resolve
from suan.ops.common.masks import as_targets
from suan.ops.titans_memory import naive
from suan.ops.titans_memory import torch as torch_path

__all__ = ["titans_memory"]


def titans_memory(
    q: Tensor, k: Tensor, v: Tensor, *, lengths: Tensor, num_targets: Tensor | int, lr: Tensor, init: Tensor,
    log_decay: Tensor, log_ratio: Tensor, max_attn_len: int = 0, backend: str = "auto",
) -> Tensor:
    """Target-aware causal linear neural memory (Behrouz et al., 2024, "Titans"), read as ``M_t q_t``.

    For the tokens of a query's past in position order (history ``i``: positions ``0..i``; a candidate:
    the history, then itself at ``n_hist``)::

        S_s = eta·S_{s-1} - theta_s·grad_s,  M_s = alpha·M_{s-1} + S_s,  M_{-1} = init, S_{-1} = 0,
        grad_s = (init·k_s - v_s) k_s^T    (the surprise gradient, halved, at the initial memory)

    The gradient is taken at the initial memory for every token: Titans' parallel mini-batch form with the
    whole sequence as one batch. It makes the memory a linear function of the writes, so
    ``M_t = alpha^(p+1)·init + sum_s w(p - p_s)·theta_s (v_s - init·k_s) k_s^T`` with
    ``w(g) = sum_{r <= g} alpha^(g - r) eta^r``: no loop, and it exports. ``eta = alpha·rho`` with
    ``rho < 1`` keeps every term bounded.

    Args:
        q, k, v: [B, H, L, D] (keys and queries usually L2-normalised).
        lengths: [B] valid tokens (history + candidates), right-padded.
        num_targets: [B] (or an int) candidates at the end of the valid tokens.
        lr: [B, H, L] theta_s >= 0, the per-token step size.
        init: [H, D, D] the initial (learned) memory, mapping a key to a value.
        log_decay: [H] ln(alpha) <= 0.
        log_ratio: [H] ln(rho) <= 0, momentum ``eta = alpha·rho``.
        max_attn_len: if > 0, a query reads only the writes of tokens less than this many positions back
            (the decay of ``init`` is unchanged). Default: 0.
        backend: ``auto`` | ``naive`` | ``torch`` | ``triton``. Default: ``auto``.

    Returns:
        [B, H, L, D], exactly zero at padded positions.
    """
    chosen = resolve(backend, q, has_triton=False)
    impl = naive.titans_memory if chosen == "naive" else torch_path.titans_memory
    return impl(q, k, v, lengths=lengths, num_targets=as_targets(num_targets, lengths), lr=lr, init=init,
                log_decay=log_decay, log_ratio=log_ratio, max_attn_len=max_attn_len)
