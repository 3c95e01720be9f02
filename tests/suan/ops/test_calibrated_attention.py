"""calibrated_attention: ACT-style sink calibration on a hand-built map, vectorised path vs the reference
(outputs and all gradients), beta = 1 is the identity, rows sum to 1 and masked keys stay 0."""

from __future__ import annotations

import pytest
import torch

from suan.ops.calibrated_attention import attention_probs, calibrated_attention
from suan.ops.calibrated_attention import naive as naive_path
from suan.ops.calibrated_attention import torch as torch_path
from suan.ops.common.masks import attention_mask
from suan.ops.rel_attention import rel_attention

# fp32: the vectorised path vs the loop reference, outputs and gradients
ATOL = 1e-6
RTOL = 1e-5
GRAD_ATOL = 1e-5
GRAD_RTOL = 1e-4
BACKENDS = ("naive", "torch")


def _hand_built() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """3 history tokens + 1 candidate; key 0 takes most history attention (mass 0.9 → score 2.7)."""
    probs = torch.tensor([[1.0, 0.0, 0.0, 0.0],
                          [0.9, 0.1, 0.0, 0.0],
                          [0.8, 0.1, 0.1, 0.0],
                          [0.5, 0.2, 0.2, 0.1]])
    lengths, targets = torch.tensor([4]), torch.tensor([1])
    mask = attention_mask(lengths, targets, 4)
    logits = torch.log(probs).masked_fill(~mask[0], 0.0).view(1, 1, 4, 4)
    return logits, mask, lengths, targets


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_answer_on_a_hand_built_map(backend):
    logits, mask, lengths, targets = _hand_built()
    got = attention_probs(logits, mask=mask, lengths=lengths, num_targets=targets, beta=0.5, tau=2.0, backend=backend)
    # query 0 sees only the sink: nothing to move; the others halve the sink and scale the rest by 1 + 0.5 s / o
    want = torch.tensor([[1.0, 0.0, 0.0, 0.0],
                         [0.45, 0.55, 0.0, 0.0],
                         [0.4, 0.3, 0.3, 0.0],
                         [0.25, 0.3, 0.3, 0.15]])
    torch.testing.assert_close(got[0, 0], want, atol=1e-6, rtol=0)
    # tau above the sink's score (2.7): nothing is a sink, probabilities unchanged
    plain = attention_probs(logits, mask=mask, lengths=lengths, num_targets=targets, beta=0.5, tau=2.8, backend=backend)
    torch.testing.assert_close(plain, torch.softmax(logits.masked_fill(~mask, float("-inf")), -1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_query_with_all_but_underflowing_mass_on_the_sink_keeps_its_attention(backend):
    # Found on a grade-5 model: a query put all but ~1e-40 of its attention on a sink, the boost
    # 0.5 / 1e-40 overflowed to inf, and inf times the masked zeros made the whole score NaN.
    logits, mask, lengths, targets = _hand_built()
    logits[0, 0, 1, 0], logits[0, 0, 1, 1] = 0.0, -95.0  # query 1: mass on key 1 is e^-95 ≈ 5e-42
    got = attention_probs(logits, mask=mask, lengths=lengths, num_targets=targets, beta=0.5, tau=2.0, backend=backend)
    assert torch.isfinite(got).all()
    plain = torch.softmax(logits.masked_fill(~mask, float("-inf")), -1)
    torch.testing.assert_close(got[0, 0, 1], plain[0, 0, 1], atol=0, rtol=0)  # nowhere to move the mass
    assert got[0, 0, 2, 0] == pytest.approx(0.5 * plain[0, 0, 2, 0].item())  # other queries still calibrated


def _random_case(seed: int, lengths: list[int], targets: list[int], seq_len: int, heads: int = 2, dim: int = 4):
    gen = torch.Generator().manual_seed(seed)
    B = len(lengths)
    logits = torch.randn(B, heads, seq_len, seq_len, generator=gen)
    logits[..., 0] += 2.5  # the first key attracts attention: a sink in most rows
    v = torch.randn(B, heads, seq_len, dim, generator=gen)
    lengths_t, targets_t = torch.tensor(lengths), torch.tensor(targets)
    return logits, v, attention_mask(lengths_t, targets_t, seq_len), lengths_t, targets_t


CASES = [([9, 5, 1, 0, 7, 3], [2, 1, 1, 0, 0, 3], 11), ([13, 2], [1, 1], 13), ([1], [1], 1)]


@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_torch_path_matches_reference_outputs_and_gradients(case, beta):
    lengths, targets, seq_len = CASES[case]
    logits, v, mask, lengths_t, targets_t = _random_case(case, lengths, targets, seq_len)
    grad_out = torch.randn(v.shape, generator=torch.Generator().manual_seed(99))
    results = {}
    for backend in BACKENDS:
        lg, vv = logits.clone().requires_grad_(True), v.clone().requires_grad_(True)
        out = calibrated_attention(lg, vv, mask=mask, lengths=lengths_t, num_targets=targets_t, beta=beta, tau=1.5,
                                   backend=backend)
        (out * grad_out).sum().backward()
        results[backend] = (out.detach(), lg.grad, vv.grad)
    for got, want, name in zip(results["torch"], results["naive"], ("out", "d logits", "d v"), strict=True):
        torch.testing.assert_close(got, want, atol=GRAD_ATOL if name != "out" else ATOL,
                                   rtol=GRAD_RTOL if name != "out" else RTOL, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_beta_one_is_the_identity_and_plain_attention(backend):
    lengths, targets, seq_len = CASES[0]
    logits, v, mask, lengths_t, targets_t = _random_case(5, lengths, targets, seq_len)
    probs = torch.softmax(logits.masked_fill(~mask.unsqueeze(1), float("-inf")), -1)
    calibrate = naive_path.calibrate if backend == "naive" else torch_path.calibrate
    assert torch.equal(calibrate(probs, lengths=lengths_t, num_targets=targets_t, beta=1.0, tau=1.5), probs)
    # the op with beta = 1 equals the reference attention with the same scores
    q, k = torch.randn(2, *v.shape, generator=torch.Generator().manual_seed(3))
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / v.shape[-1] ** 0.5
    ts = torch.zeros(len(lengths), seq_len, dtype=torch.int64)
    want = rel_attention(q, k, v, lengths=lengths_t, num_targets=targets_t, timestamps=ts, backend="naive")
    got = calibrated_attention(scores, v, mask=mask, lengths=lengths_t, num_targets=targets_t, beta=1.0,
                               backend=backend)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_sum_to_one_masked_keys_stay_zero_and_sinks_move_mass(backend):
    lengths, targets, seq_len = CASES[0]
    logits, _, mask, lengths_t, targets_t = _random_case(7, lengths, targets, seq_len)
    plain = attention_probs(logits, mask=mask, lengths=lengths_t, num_targets=targets_t, backend=backend)
    got = attention_probs(logits, mask=mask, lengths=lengths_t, num_targets=targets_t, beta=0.2, tau=1.5,
                          backend=backend)
    valid = torch.arange(seq_len).unsqueeze(0) < lengths_t.unsqueeze(1)  # [B, L]
    sums = got.sum(-1)  # [B, H, L]
    torch.testing.assert_close(sums[valid.unsqueeze(1).expand_as(sums)], torch.ones(int(valid.sum()) * 2))
    assert torch.all(got[~mask.unsqueeze(1).expand_as(got)] == 0)
    assert torch.all(got[~valid.unsqueeze(1).expand_as(sums)] == 0), "padded query rows must be zero"
    # the first key is a sink in row 0: its attention drops, the rest gains
    assert got[0, :, 1:7, 0].sum() < 0.5 * plain[0, :, 1:7, 0].sum()
    sinks = torch_path.sink_mask(plain, lengths=lengths_t, num_targets=targets_t, tau=1.5)
    assert not sinks[..., 7:].any(), "candidates and padding are never sinks"
