"""rel_attention and its masks: brute-force definitions, torch vs naive on outputs and all gradients."""

from __future__ import annotations

import math

import pytest
import torch

import suan.ops.common.backend as backend_mod
import suan.ops.rel_attention as rel_pkg
from suan.ops.common.backend import resolve
from suan.ops.common.masks import TIME_BUCKETS, attention_mask, positions, time_buckets
from suan.ops.rel_attention import rel_attention

# fp32 tolerances for fast path vs reference (outputs and gradients)
ATOL_FP32 = 1e-5
RTOL_FP32 = 1e-4
# naive vs an explicit python loop of the definition (float64 loop, fp32 op)
ATOL_LOOP = 1e-5
RTOL_LOOP = 1e-5


def _brute_mask(lengths: list[int], num_targets: list[int], seq_len: int, max_attn_len: int) -> torch.Tensor:
    """The layout contract written out token by token: [B, L, L] bool."""
    out = [[[False] * seq_len for _ in range(seq_len)] for _ in lengths]
    for b, (n, t) in enumerate(zip(lengths, num_targets, strict=True)):
        n_hist = n - t
        for i in range(seq_len):
            for j in range(seq_len):
                if i >= n:
                    ok = i == j  # padded query: itself only
                elif i < n_hist:
                    ok = j <= i and (max_attn_len == 0 or i - j < max_attn_len)  # history: causal
                else:
                    # candidate at position n_hist: the whole history (window permitting) and itself
                    ok = i == j or (j < n_hist and (max_attn_len == 0 or n_hist - j < max_attn_len))
                out[b][i][j] = ok
    return torch.tensor(out, dtype=torch.bool).view(len(lengths), seq_len, seq_len)  # [B, L, L]


def _random_layout(gen: torch.Generator, batch: int, seq_len: int) -> tuple[list[int], list[int]]:
    """Lengths with an empty row, a length-1 row, a full row and random ones; targets incl. = lengths."""
    lengths = [0, min(1, seq_len), seq_len] + torch.randint(0, seq_len + 1, (batch,), generator=gen).tolist()
    targets = []
    for r, n in enumerate(lengths):
        if r == 2:
            targets.append(n)  # every valid token is a candidate
        else:
            targets.append(int(torch.randint(0, n + 1, (1,), generator=gen)))
    return lengths, targets


MASK_CASES = [(seed, seq_len, window) for seed, seq_len in enumerate((1, 2, 7, 16, 63)) for window in (0, 1, 3)]


@pytest.mark.parametrize(("seed", "seq_len", "max_attn_len"), MASK_CASES,
                         ids=[f"L{c[1]}-w{c[2]}" for c in MASK_CASES])
def test_attention_mask_matches_brute_force(seed, seq_len, max_attn_len):
    gen = torch.Generator().manual_seed(seed)
    lengths, targets = _random_layout(gen, 3, seq_len)
    got = attention_mask(torch.tensor(lengths), torch.tensor(targets), seq_len, max_attn_len)
    assert got.dtype == torch.bool and got.shape == (len(lengths), seq_len, seq_len)
    assert torch.equal(got, _brute_mask(lengths, targets, seq_len, max_attn_len))


def test_attention_mask_long_sequence_with_short_rows():
    lengths, targets = [257, 0, 1, 100, 40], [5, 0, 1, 100, 0]
    got = attention_mask(torch.tensor(lengths), torch.tensor(targets), 257, 16)
    assert torch.equal(got, _brute_mask(lengths, targets, 257, 16))


def test_positions_candidates_share_history_length():
    lengths, targets, seq_len = [0, 1, 6, 6, 4], [0, 1, 2, 6, 0], 8
    got = positions(torch.tensor(lengths), torch.tensor(targets), seq_len)
    want = [[min(i, n - t) for i in range(seq_len)] for n, t in zip(lengths, targets, strict=True)]
    assert torch.equal(got, torch.tensor(want))


def _ref_bucket(dt: int) -> int:
    return min(max(math.floor(math.log(max(abs(dt), 1)) / 0.301), 0), TIME_BUCKETS - 1)


# none of these lies within 0.1 of a bucket edge, where fp32 log may round either way
CHOSEN_DT = [0, 1, 2, 3, 4, 5, 10, 59, 60, 61, 3600, 86400, 604800, 31_536_000, 10**9,
             2**40, 10**15, 2**62, -1, -2, -86400, -(2**62)]


def test_time_buckets_chosen_gaps():
    base = 1_700_000_000
    dt = torch.tensor(CHOSEN_DT, dtype=torch.int64)
    # dt of 2**62 overflows if added to base: use t_j = 0 for the huge ones
    t_i = torch.where(dt.abs() > 2**50, torch.zeros_like(dt), torch.full_like(dt, base))
    ts = torch.stack([t_i, t_i + dt], dim=1)  # [N, 2]
    got = time_buckets(ts)  # [N, 2, 2]
    want = torch.tensor([_ref_bucket(d) for d in CHOSEN_DT])
    assert torch.equal(got[:, 1, 0], want) and torch.equal(got[:, 0, 1], want)
    assert torch.all(got[:, 0, 0] == 0) and torch.all(got[:, 1, 1] == 0)


def test_time_buckets_every_gap_up_to_a_day():
    dt = torch.arange(0, 86_401, dtype=torch.int64)
    ts = torch.stack([torch.zeros_like(dt), dt], dim=1)  # [N, 2]
    want = torch.tensor([_ref_bucket(d) for d in dt.tolist()])
    assert torch.equal(time_buckets(ts)[:, 1, 0], want)


def test_time_buckets_at_most_one_off_at_bucket_edges():
    # documents the fp32 arithmetic: next to an edge (dt ≳ 4e5 s) the bucket may be the neighbour
    edges = [math.exp(0.301 * k) for k in range(1, 100)]
    dts = sorted({d for e in edges for d in (math.floor(e), math.ceil(e))})
    dt = torch.tensor(dts, dtype=torch.int64)
    got = time_buckets(torch.stack([torch.zeros_like(dt), dt], dim=1))[:, 1, 0]
    want = torch.tensor([_ref_bucket(d) for d in dts])
    assert (got - want).abs().max() <= 1


def _inputs(seed: int, lengths: list[int], targets: list[int], seq_len: int, heads: int, dim: int,
            pos: bool, time: bool):
    gen = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    q, k, v = (torch.randn(batch, heads, seq_len, dim, generator=gen) for _ in range(3))
    # a short position table so the gap clamp is exercised too
    pos_bias = torch.randn(max(seq_len // 2, 1) + 1, generator=gen) if pos else None
    time_bias = torch.randn(TIME_BUCKETS, generator=gen) if time else None
    timestamps = torch.randint(0, 10**7, (batch, seq_len), generator=gen)
    return dict(q=q, k=k, v=v, lengths=torch.tensor(lengths), num_targets=torch.tensor(targets),
                timestamps=timestamps, pos_bias=pos_bias, time_bias=time_bias)


def _run(inputs: dict, backend: str, max_attn_len: int, grad_out: torch.Tensor):
    """Output and the gradients of q, k, v and the biases for ``sum(out * grad_out)``."""
    leaves = {name: t.clone().requires_grad_(True) for name, t in inputs.items()
              if name in ("q", "k", "v", "pos_bias", "time_bias") and t is not None}
    args = {**inputs, **leaves}
    out = rel_attention(**args, max_attn_len=max_attn_len, backend=backend)
    (out * grad_out).sum().backward()
    return out.detach(), {name: t.grad for name, t in leaves.items()}


def _check_padding_zero(out: torch.Tensor, lengths: torch.Tensor) -> None:
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[b, :, n:] == 0), f"row {b}: padded output is not exactly zero"


# (L, H, D) with odd lengths; every batch has an empty row and a length-1 row (see _random_layout)
SHAPES = [(1, 1, 8), (7, 3, 16), (7, 1, 8), (63, 3, 8), (63, 1, 16)]
BIASES = {"nobias": (False, False), "pos": (True, False), "time": (False, True), "both": (True, True)}
FAST_CASES = [(s, b, w) for s in SHAPES for b in BIASES for w in (0, 5)]


@pytest.mark.parametrize(("shape", "bias", "max_attn_len"), FAST_CASES,
                         ids=[f"L{s[0]}-H{s[1]}-D{s[2]}-{b}-w{w}" for s, b, w in FAST_CASES])
def test_torch_matches_naive_outputs_and_grads(shape, bias, max_attn_len):
    seq_len, heads, dim = shape
    gen = torch.Generator().manual_seed(seq_len * 100 + heads * 10 + dim)
    lengths, targets = _random_layout(gen, 2, seq_len)
    inputs = _inputs(seq_len + dim, lengths, targets, seq_len, heads, dim, *BIASES[bias])
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    ref_out, ref_grads = _run(inputs, "naive", max_attn_len, grad_out)
    out, grads = _run(inputs, "torch", max_attn_len, grad_out)
    assert out.shape == (len(lengths), heads, seq_len, dim)
    _check_padding_zero(ref_out, inputs["lengths"])
    _check_padding_zero(out, inputs["lengths"])
    torch.testing.assert_close(out, ref_out, atol=ATOL_FP32, rtol=RTOL_FP32)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=ATOL_FP32, rtol=RTOL_FP32, msg=name)


def _loop_rel_attention(inputs: dict, max_attn_len: int) -> torch.Tensor:
    """softmax_j(q_i·k_j / sqrt(D) + pos_bias[gap] + time_bias[bucket]) over allowed j, float64 loops."""
    q, k, v = (inputs[n].double() for n in ("q", "k", "v"))
    batch, heads, seq_len, dim = q.shape
    lengths, targets = inputs["lengths"].tolist(), inputs["num_targets"].tolist()
    allowed = _brute_mask(lengths, targets, seq_len, max_attn_len)
    pos_bias, time_bias, ts = inputs["pos_bias"], inputs["time_bias"], inputs["timestamps"].tolist()
    out = torch.zeros_like(q)
    for b in range(batch):
        n_hist = lengths[b] - targets[b]
        for h in range(heads):
            for i in range(lengths[b]):
                scores = {}
                for j in range(seq_len):
                    if not allowed[b, i, j]:
                        continue
                    s = float(q[b, h, i] @ k[b, h, j]) / math.sqrt(dim)
                    if pos_bias is not None:
                        gap = min(i, n_hist) - min(j, n_hist)
                        s += float(pos_bias[min(max(gap, 0), pos_bias.shape[0] - 1)])
                    if time_bias is not None:
                        s += float(time_bias[_ref_bucket(ts[b][i] - ts[b][j])])
                    scores[j] = s
                top = max(scores.values())
                total = sum(math.exp(s - top) for s in scores.values())
                for j, s in scores.items():
                    out[b, h, i] += math.exp(s - top) / total * v[b, h, j]
    return out


def test_naive_matches_loop_definition():
    inputs = _inputs(3, [6, 0, 1, 5], [2, 0, 1, 5], 6, 2, 4, True, True)
    # timestamps within 0..1000 keep every bucket far from an edge of the fp32 log
    inputs["timestamps"] = torch.randint(0, 1000, (4, 6), generator=torch.Generator().manual_seed(4))
    for window in (0, 2):
        got = rel_attention(**inputs, max_attn_len=window, backend="naive")
        torch.testing.assert_close(got.double(), _loop_rel_attention(inputs, window), atol=ATOL_LOOP, rtol=RTOL_LOOP)


def test_auto_on_cpu_resolves_to_torch(monkeypatch):
    cpu = torch.zeros(1)
    assert resolve("auto", cpu, has_triton=True) == "torch"
    assert resolve("auto", cpu, has_triton=False) == "torch"
    inputs = _inputs(0, [3, 1], [1, 0], 3, 1, 8, True, True)
    want = rel_attention(**inputs, backend="torch")
    calls = []
    real = rel_pkg.torch_path.rel_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(rel_pkg.torch_path, "rel_attention", spy)
    got = rel_attention(**inputs, backend="auto")
    assert calls == [1]
    assert torch.equal(got, want)


def test_bad_backends_raise():
    inputs = _inputs(0, [2], [1], 2, 1, 8, False, False)
    with pytest.raises(ValueError, match="unknown backend 'flash'"):
        rel_attention(**inputs, backend="flash")


def test_resolve_triton_rules(monkeypatch):
    cpu = torch.zeros(1)
    with pytest.raises(NotImplementedError, match="no Triton path"):
        resolve("triton", cpu, has_triton=False)
    # without the triton package (macOS): auto never picks it, asking for it explains why
    monkeypatch.setattr(backend_mod, "triton_available", lambda: False)
    assert resolve("auto", cpu, has_triton=True) == "torch"
    with pytest.raises(NotImplementedError, match="not installed"):
        resolve("triton", cpu, has_triton=True)
