"""sparse_attention (LightSUAN): the mask against its definition, gather path vs reference on outputs and
all gradients, equality with rel_attention where the pattern is dense, ONNX export with a dynamic length."""

from __future__ import annotations

import math

import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

import suan.ops.sparse_attention as sparse_pkg
from suan.ops.common.masks import TIME_BUCKETS, attention_mask
from suan.ops.rel_attention import rel_attention
from suan.ops.sparse_attention import sparse_attention, sparse_attention_mask, sparse_offsets
from suan.ops.sparse_attention import torch as torch_path

# fp32 tolerances for the gather path vs the reference (outputs and gradients)
ATOL_FP32 = 1e-5
RTOL_FP32 = 1e-4
# bf16 inputs: relative RMS error of the gather path against the fp32 reference; the bias gradients
# sum bf16 terms over every (query, key) pair
RRMS_BF16 = 5e-3
RRMS_BF16_GRAD = 1e-2
# the reference vs an explicit float64 python loop of the definition
ATOL_LOOP = 1e-5
RTOL_LOOP = 1e-5
GRAD_NAMES = ("q", "k", "v", "pos_bias", "time_bias")


def _offset_set(local_window: int, dilation: int, seq_len: int) -> set[int]:
    """``{1..k} ∪ {m·r : m >= 1}``, cut to gaps a length-L sequence can have."""
    return set(range(1, local_window + 1)) | set(range(dilation, seq_len + 1, dilation))


def _brute_mask(lengths: list[int], targets: list[int], seq_len: int, local_window: int, dilation: int,
                max_attn_len: int = 0) -> Tensor:
    """The definition token by token: query at position p sees itself and history keys at p - d, d in D."""
    offsets = _offset_set(local_window, dilation, seq_len)
    out = torch.zeros(len(lengths), seq_len, seq_len, dtype=torch.bool)  # [B, L, L]
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        n_hist = n - t
        for i in range(seq_len):
            out[b, i, i] = True
            if i >= n:
                continue  # padded query: itself only
            p = min(i, n_hist)
            for j in range(n_hist):
                gap = p - j
                out[b, i, j] |= gap in offsets and (max_attn_len == 0 or gap < max_attn_len)
    return out


def _random_layout(gen: torch.Generator, batch: int, seq_len: int) -> tuple[list[int], list[int]]:
    """Lengths with an empty row, a length-1 row, a full row and random ones; targets incl. = lengths."""
    lengths = [0, min(1, seq_len), seq_len] + torch.randint(0, seq_len + 1, (batch,), generator=gen).tolist()
    targets = [n if r == 2 else int(torch.randint(0, n + 1, (1,), generator=gen)) for r, n in enumerate(lengths)]
    return lengths, targets


# (L, k, r): k = 0, r = 1 (dense), r > L, k >= L, and ordinary patterns
MASK_CASES = [(1, 0, 1), (1, 2, 3), (2, 0, 1), (7, 0, 3), (7, 2, 3), (7, 1, 10), (7, 9, 2), (16, 3, 4),
              (16, 0, 16), (63, 4, 5), (63, 8, 1), (63, 5, 100)]


@pytest.mark.parametrize(("seq_len", "local_window", "dilation"), MASK_CASES,
                         ids=[f"L{c[0]}-k{c[1]}-r{c[2]}" for c in MASK_CASES])
def test_mask_matches_brute_force(seq_len, local_window, dilation):
    gen = torch.Generator().manual_seed(seq_len * 31 + local_window * 7 + dilation)
    lengths, targets = _random_layout(gen, 3, seq_len)
    for max_attn_len in (0, 3):
        got = sparse_attention_mask(torch.tensor(lengths), torch.tensor(targets), seq_len, local_window, dilation,
                                    max_attn_len)
        want = _brute_mask(lengths, targets, seq_len, local_window, dilation, max_attn_len)
        assert got.dtype == torch.bool and torch.equal(got, want), f"max_attn_len {max_attn_len}"


def test_dense_patterns_equal_the_causal_mask():
    lengths, targets, seq_len = torch.tensor([0, 1, 9, 17, 17]), torch.tensor([0, 1, 3, 0, 17]), 17
    dense = attention_mask(lengths, targets, seq_len)
    for local_window, dilation in ((0, 1), (5, 1), (16, 7), (40, 3)):
        assert torch.equal(sparse_attention_mask(lengths, targets, seq_len, local_window, dilation), dense)
    assert not torch.equal(sparse_attention_mask(lengths, targets, seq_len, 2, 5), dense)


@pytest.mark.parametrize("seq_len", [1, 2, 5, 16, 17, 63])
@pytest.mark.parametrize(("local_window", "dilation"), [(0, 1), (0, 4), (3, 4), (4, 4), (8, 3), (2, 70)])
def test_offsets_cover_the_definition_once(seq_len, local_window, dilation):
    offsets = sparse_offsets(seq_len, local_window, dilation)
    got = offsets.tolist()
    assert got[0] == 0 and len(set(got)) == len(got)
    assert len(got) == local_window + 1 + seq_len // dilation + 1
    assert {d for d in got if 1 <= d < seq_len} == {d for d in _offset_set(local_window, dilation, seq_len)
                                                      if d < seq_len}


def _inputs(seed: int, lengths: list[int], targets: list[int], seq_len: int, heads: int, dim: int,
            bias: bool = True) -> dict:
    gen = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    q, k, v = (torch.randn(batch, heads, seq_len, dim, generator=gen) for _ in range(3))
    # a short position table so the gap clamp is exercised too
    pos_bias = torch.randn(max(seq_len // 2, 1) + 1, generator=gen) if bias else None
    time_bias = torch.randn(TIME_BUCKETS, generator=gen) if bias else None
    timestamps = torch.randint(0, 10**7, (batch, seq_len), generator=gen)
    return dict(q=q, k=k, v=v, lengths=torch.tensor(lengths), num_targets=torch.tensor(targets),
                timestamps=timestamps, pos_bias=pos_bias, time_bias=time_bias)


def _run(fn, inputs: dict, grad_out: Tensor, **kwargs) -> tuple[Tensor, dict[str, Tensor]]:
    """Output and the gradients of q, k, v and the biases for ``sum(out * grad_out)``."""
    leaves = {name: inputs[name].clone().requires_grad_(True) for name in GRAD_NAMES if inputs[name] is not None}
    out = fn(**{**inputs, **leaves}, **kwargs)
    (out.float() * grad_out).sum().backward()
    return out.detach(), {name: t.grad for name, t in leaves.items()}


def _check_close(got: tuple, want: tuple) -> None:
    (out, grads), (ref_out, ref_grads) = got, want
    torch.testing.assert_close(out, ref_out, atol=ATOL_FP32, rtol=RTOL_FP32)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=ATOL_FP32, rtol=RTOL_FP32, msg=name)


def _check_padding_zero(out: Tensor, lengths: Tensor) -> None:
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[b, :, n:] == 0), f"row {b}: padded output is not exactly zero"


# (L, H, D, k, r, max_attn_len); every batch has an empty, a length-1 and an all-candidate row
FAST_CASES = [(1, 1, 8, 0, 1, 0), (1, 2, 8, 3, 4, 0), (7, 3, 16, 0, 2, 0), (7, 1, 8, 2, 3, 0), (7, 2, 8, 1, 9, 0),
              (7, 2, 8, 2, 3, 4), (63, 3, 8, 4, 5, 0), (63, 1, 16, 8, 16, 0), (63, 2, 8, 0, 7, 0),
              (63, 2, 8, 3, 4, 20)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("seq_len", "heads", "dim", "local_window", "dilation", "max_attn_len"), FAST_CASES,
                         ids=[f"L{c[0]}-H{c[1]}-D{c[2]}-k{c[3]}-r{c[4]}-w{c[5]}" for c in FAST_CASES])
def test_torch_matches_naive_outputs_and_grads(seq_len, heads, dim, local_window, dilation, max_attn_len, bias):
    gen = torch.Generator().manual_seed(seq_len * 100 + local_window * 10 + dilation)
    lengths, targets = _random_layout(gen, 2, seq_len)
    inputs = _inputs(seq_len + dim + dilation, lengths, targets, seq_len, heads, dim, bias)
    grad_out = torch.randn(len(lengths), heads, seq_len, dim, generator=gen)
    pattern = dict(local_window=local_window, dilation=dilation, max_attn_len=max_attn_len)
    ref = _run(sparse_attention, inputs, grad_out, **pattern, backend="naive")
    got = _run(sparse_attention, inputs, grad_out, **pattern, backend="torch")
    assert got[0].shape == (len(lengths), heads, seq_len, dim)
    _check_padding_zero(ref[0], inputs["lengths"])
    _check_padding_zero(got[0], inputs["lengths"])
    _check_close(got, ref)


@pytest.mark.parametrize("query_chunk", [1, 5, 62, 64])
def test_query_chunks_match_naive(query_chunk):
    # eager mode gathers a block of queries at a time: blocks with a remainder must give the same result
    lengths, targets, seq_len = [63, 40, 0, 1, 17], [2, 40, 0, 1, 0], 63
    inputs = _inputs(11, lengths, targets, seq_len, 2, 8)
    grad_out = torch.randn(len(lengths), 2, seq_len, 8, generator=torch.Generator().manual_seed(12))
    ref = _run(sparse_attention, inputs, grad_out, local_window=3, dilation=5, backend="naive")
    got = _run(torch_path.sparse_attention, inputs, grad_out, local_window=3, dilation=5, max_attn_len=0,
               query_chunk=query_chunk)
    _check_close(got, ref)


def test_bf16_close_to_fp32_reference():
    lengths, targets, seq_len = [63, 30, 1], [3, 0, 1], 63
    inputs = _inputs(13, lengths, targets, seq_len, 2, 16)
    grad_out = torch.randn(len(lengths), 2, seq_len, 16, generator=torch.Generator().manual_seed(14))
    ref_out, ref_grads = _run(sparse_attention, inputs, grad_out, local_window=4, dilation=3, backend="naive")
    low = {**inputs, **{name: inputs[name].bfloat16() for name in ("q", "k", "v")}}
    out, grads = _run(sparse_attention, low, grad_out, local_window=4, dilation=3, backend="torch")
    assert out.dtype == torch.bfloat16
    cases = [("out", out, ref_out, RRMS_BF16)] + [(n, grads[n], ref_grads[n], RRMS_BF16_GRAD) for n in GRAD_NAMES]
    for name, got, want, limit in cases:
        rrms = (got.float() - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt()
        assert rrms < limit, f"{name}: relative RMS {rrms:.2e}"


@pytest.mark.parametrize("backend", ["naive", "torch"])
@pytest.mark.parametrize(("seq_len", "local_window", "dilation"), [(7, 0, 1), (63, 4, 1), (7, 6, 3), (63, 70, 5)])
def test_dense_patterns_equal_rel_attention(seq_len, local_window, dilation, backend):
    gen = torch.Generator().manual_seed(seq_len + local_window)
    lengths, targets = _random_layout(gen, 2, seq_len)
    inputs = _inputs(seq_len * 3, lengths, targets, seq_len, 2, 8)
    grad_out = torch.randn(len(lengths), 2, seq_len, 8, generator=gen)
    ref = _run(rel_attention, inputs, grad_out, backend="naive")
    got = _run(sparse_attention, inputs, grad_out, local_window=local_window, dilation=dilation, backend=backend)
    _check_close(got, ref)


def _ref_bucket(dt: int) -> int:
    return min(max(math.floor(math.log(max(abs(dt), 1)) / 0.301), 0), TIME_BUCKETS - 1)


def _loop_sparse_attention(inputs: dict, local_window: int, dilation: int) -> Tensor:
    """softmax_j(q_i·k_j / sqrt(D) + pos_bias[gap] + time_bias[bucket]) over the definition's keys, float64."""
    q, k, v = (inputs[n].double() for n in ("q", "k", "v"))
    batch, heads, seq_len, dim = q.shape
    lengths, targets = inputs["lengths"].tolist(), inputs["num_targets"].tolist()
    allowed = _brute_mask(lengths, targets, seq_len, local_window, dilation)
    pos_bias, time_bias, ts = inputs["pos_bias"], inputs["time_bias"], inputs["timestamps"].tolist()
    out = torch.zeros_like(q)
    for b in range(batch):
        n_hist = lengths[b] - targets[b]
        for h in range(heads):
            for i in range(lengths[b]):
                scores = {}
                for j in (j for j in range(seq_len) if allowed[b, i, j]):
                    gap = min(i, n_hist) - min(j, n_hist)
                    scores[j] = (float(q[b, h, i] @ k[b, h, j]) / math.sqrt(dim)
                                 + float(pos_bias[min(gap, pos_bias.shape[0] - 1)])
                                 + float(time_bias[_ref_bucket(ts[b][i] - ts[b][j])]))
                top = max(scores.values())
                total = sum(math.exp(s - top) for s in scores.values())
                for j, s in scores.items():
                    out[b, h, i] += math.exp(s - top) / total * v[b, h, j]
    return out


def test_naive_matches_loop_definition():
    inputs = _inputs(3, [11, 0, 1, 9], [2, 0, 1, 9], 11, 2, 4)
    # timestamps within 0..1000 keep every bucket far from an edge of the fp32 log
    inputs["timestamps"] = torch.randint(0, 1000, (4, 11), generator=torch.Generator().manual_seed(4))
    for local_window, dilation in ((2, 3), (0, 4), (1, 1)):
        want = _loop_sparse_attention(inputs, local_window, dilation)
        for backend in ("naive", "torch"):
            got = sparse_attention(**inputs, local_window=local_window, dilation=dilation, backend=backend)
            torch.testing.assert_close(got.double(), want, atol=ATOL_LOOP, rtol=RTOL_LOOP, msg=backend)


def test_auto_on_cpu_dispatches_to_torch(monkeypatch):
    inputs = _inputs(0, [3, 1], [1, 0], 3, 1, 8)
    want = sparse_attention(**inputs, local_window=1, dilation=2, backend="torch")
    calls = []
    real = sparse_pkg.torch_path.sparse_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sparse_pkg.torch_path, "sparse_attention", spy)
    got = sparse_attention(**inputs, local_window=1, dilation=2, backend="auto")
    assert calls == [1] and torch.equal(got, want)


def test_bad_arguments_raise():
    inputs = _inputs(0, [2], [1], 2, 1, 8)
    with pytest.raises(ValueError, match="unknown backend 'flash'"):
        sparse_attention(**inputs, local_window=1, dilation=2, backend="flash")
    for local_window, dilation in ((-1, 2), (1, 0)):
        with pytest.raises(ValueError, match="local_window >= 0 and dilation >= 1"):
            sparse_attention(**inputs, local_window=local_window, dilation=dilation)


class _Wrapper(nn.Module):
    """The op with learned biases and positional tensor inputs, for the exporter."""

    def __init__(self, max_len: int, local_window: int, dilation: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.pos_bias = nn.Parameter(torch.randn(max_len + 1, generator=gen))
        self.time_bias = nn.Parameter(torch.randn(TIME_BUCKETS, generator=gen))
        self.local_window, self.dilation = local_window, dilation

    def forward(self, q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, num_targets: Tensor,
                timestamps: Tensor) -> Tensor:
        return sparse_attention(q, k, v, lengths=lengths, num_targets=num_targets, timestamps=timestamps,
                                pos_bias=self.pos_bias, time_bias=self.time_bias, local_window=self.local_window,
                                dilation=self.dilation, backend="torch")


def _export_batch(lengths: list[int], targets: list[int], seq_len: int, seed: int) -> dict[str, Tensor]:
    inputs = _inputs(seed, lengths, targets, seq_len, 2, 8, bias=False)
    # increasing history times, candidates at the impression time
    inputs["timestamps"] = 1_700_000_000 + inputs["timestamps"].cumsum(dim=1)
    return {name: inputs[name] for name in ("q", "k", "v", "lengths", "num_targets", "timestamps")}


@pytest.mark.integration
# exporter noise of torch 2.13 (pytree deprecation, dim renaming): not about our graph
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec:FutureWarning", "ignore:# The axis name:UserWarning")
def test_onnx_export_keeps_batch_and_length_dynamic(tmp_path):
    max_len = 64
    wrapper = _Wrapper(max_len, local_window=3, dilation=4).eval()
    # L = 9: 9 // 4 + 1 = 3 dilated slots in the graph traced here
    example = _export_batch([9, 4, 0], [2, 1, 0], 9, seed=8)
    batch_dim, seq_dim = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("seq", min=1, max=max_len)
    bl = {0: batch_dim, 2: seq_dim}
    path = tmp_path / "sparse.onnx"
    torch.onnx.export(wrapper, tuple(example.values()), path, dynamo=True, verbose=False,
                      input_names=list(example), output_names=["y"],
                      dynamic_shapes=(bl, bl, bl, {0: batch_dim}, {0: batch_dim}, {0: batch_dim, 1: seq_dim}))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # other batch sizes and lengths: 14 and 31 have 4 and 8 dilated slots, 1 a single one
    for lengths, targets, seq_len in (([14, 1, 0, 7, 3], [3, 1, 0, 2, 0], 14), ([31, 20], [1, 5], 31),
                                     ([1, 0], [1, 0], 1)):
        batch = _export_batch(lengths, targets, seq_len, seed=seq_len)
        (got,) = session.run(None, {name: value.numpy() for name, value in batch.items()})
        with torch.no_grad():
            want = wrapper(*batch.values())
        torch.testing.assert_close(torch.from_numpy(got), want, atol=ATOL_FP32, rtol=0)
