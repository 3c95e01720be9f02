"""titans_memory: the closed form against the step-by-step recurrence on outputs and all gradients, and
the recurrence against one literal sequential pass per row."""

from __future__ import annotations

import pytest
import torch

from suan.ops.titans_memory import titans_memory
from suan.ops.titans_memory.torch import gap_kernel
from tests.suan.ops.slot_checks import (
    check_close,
    check_padding_zero,
    make_inputs,
    random_layout,
    run_with_grads,
)

NAMES = ("q", "k", "v", "lr", "init", "log_decay", "log_ratio")


def _memory_inputs(seed: int, lengths, targets, seq_len: int, heads: int, dim: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    inputs = make_inputs(seed, lengths, targets, seq_len, heads, dim, bias=False)
    for name in ("q", "k"):
        inputs[name] = torch.nn.functional.normalize(inputs[name], dim=-1)
    return dict(q=inputs["q"], k=inputs["k"], v=inputs["v"], lengths=inputs["lengths"],
                num_targets=inputs["num_targets"], lr=torch.rand(len(lengths), heads, seq_len, generator=gen),
                init=0.3 * torch.randn(heads, dim, dim, generator=gen),
                log_decay=-0.5 * torch.rand(heads, generator=gen), log_ratio=-2.0 * torch.rand(heads, generator=gen))


def test_gap_kernel_is_the_momentum_sum():
    log_decay, log_ratio = torch.tensor([-0.1, -0.7]), torch.tensor([-0.3, -0.01])
    alpha, eta = log_decay.exp(), (log_decay + log_ratio).exp()
    want = torch.stack([sum(alpha ** (g - r) * eta**r for r in range(g + 1)) for g in range(9)], dim=-1)
    torch.testing.assert_close(gap_kernel(log_decay, log_ratio, 9), want)


def _sequential(inputs, b):
    """One pass over row b's history, then each candidate from the history state: M_t q_t."""
    q, k, v, lr = (inputs[n][b] for n in ("q", "k", "v", "lr"))  # [H, L, D], lr [H, L]
    init = inputs["init"]  # [H, D, D]
    alpha = inputs["log_decay"].exp().view(-1, 1, 1)
    eta = alpha * inputs["log_ratio"].exp().view(-1, 1, 1)
    n, t = int(inputs["lengths"][b]), int(inputs["num_targets"][b])

    def write(s):
        error = v[:, s] - torch.einsum("hde,he->hd", init, k[:, s])  # [H, D]
        return lr[:, s].view(-1, 1, 1) * torch.einsum("hd,he->hde", error, k[:, s])
    memory, momentum = init.clone(), torch.zeros_like(init)
    out = torch.zeros_like(q)
    for s in range(n - t):
        momentum = eta * momentum + write(s)
        memory = alpha * memory + momentum
        out[:, s] = torch.einsum("hde,he->hd", memory, q[:, s])
    for c in range(n - t, n):
        cand = alpha * memory + (eta * momentum + write(c))
        out[:, c] = torch.einsum("hde,he->hd", cand, q[:, c])
    return out


def test_recurrence_matches_sequential_pass():
    inputs = _memory_inputs(1, [9, 0, 1, 6, 5], [3, 0, 1, 0, 5], 9, 2, 4)
    for backend in ("naive", "torch"):
        got = titans_memory(**inputs, backend=backend)
        for b in range(5):
            torch.testing.assert_close(got[b], _sequential(inputs, b), atol=1e-5, rtol=1e-5, msg=backend)


CASES = [(1, 1, 4, 0), (7, 2, 4, 0), (7, 1, 8, 3), (17, 2, 4, 5), (33, 2, 8, 0), (33, 3, 4, 9)]


@pytest.mark.parametrize(("seq_len", "heads", "dim", "max_attn_len"), CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-W{c[3]}" for c in CASES])
def test_torch_matches_naive_outputs_and_grads(seq_len, heads, dim, max_attn_len):
    gen = torch.Generator().manual_seed(seq_len * 10 + heads)
    lengths, targets = random_layout(gen, 2, seq_len)
    inputs = _memory_inputs(seq_len + dim, lengths, targets, seq_len, heads, dim)
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    ref = run_with_grads(titans_memory, inputs, grad_out, NAMES, max_attn_len=max_attn_len, backend="naive")
    got = run_with_grads(titans_memory, inputs, grad_out, NAMES, max_attn_len=max_attn_len, backend="torch")
    check_padding_zero(ref[0], inputs["lengths"])
    check_padding_zero(got[0], inputs["lengths"])
    check_close(got, ref)
