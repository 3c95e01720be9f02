"""Attention kernels vs SDPA with a materialised bias, FlexAttention and the reference, per mask pattern and L.

A benchmark, not a test. For every (pattern, L) it builds one batch, computes the fp32 reference (naive,
on the same inputs upcast), then for every implementation first checks its output (and, with backward,
all gradients) against the reference: a failing case prints FAIL and gets no timing or speedup. Passing
cases report the median time, TFLOP/s counting only the unmasked (query, key) pairs of valid queries
(``4·D`` flops per pair forward, ``8·D`` more backward: the useful matmuls, no recompute), the peak extra
memory (CUDA only: ``max_memory_allocated`` over one call), and the speedup over SDPA-with-bias measured in
the same run. Prints a Markdown table.

Implementations: ``triton`` (our kernels; on CPU under the Triton interpreter, which is 100×+ slower: a
smoke run only), ``triton-jagged`` (jagged pattern: the jagged entry point on the packed valid tokens),
``sdpa`` (the existing torch path: ``F.scaled_dot_product_attention`` with a materialised ``[B, 1, L, L]``
float bias + mask), ``gather`` (LightSUAN's torch gather path), ``flex`` (FlexAttention with a score_mod for
the bias and a block mask; compiled on CUDA, eager and forward-only on CPU) and ``naive``.

Run from the repository root::

    .venv/bin/python -m benchmarks.attention_bench --help
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.attention_bench --device cpu
    python -m benchmarks.attention_bench --device cuda --dtype bf16 --lengths 1024,2048,4096,8192
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from suan.ops.common.masks import TIME_BUCKETS, attention_mask, log_time_bucket, relative_bias, valid_tokens
from suan.ops.hstu_attention import hstu_attention
from suan.ops.rel_attention import rel_attention
from suan.ops.sparse_attention import sparse_attention, sparse_attention_mask

PATTERNS = ("causal", "window", "local-dilated", "candidates", "jagged", "hstu")
GRAD_NAMES = ("q", "k", "v", "pos_bias", "time_bias")
# correctness gate against the fp32 reference: fp32 elementwise (looser than the unit tests: sums over
# thousands of keys), bf16 relative RMS error
ATOL_FP32, RTOL_FP32 = 1e-4, 1e-3
RRMS_BF16 = 2e-2


@dataclass(frozen=True)
class Case:
    """One mask pattern at one length: which op, the layout and the pattern's parameters."""

    pattern: str
    op: str  # "rel" | "sparse" | "hstu"
    lengths: list[int]
    num_targets: list[int]
    max_attn_len: int = 0
    local_window: int = 0
    dilation: int = 1


def make_case(pattern: str, batch: int, seq_len: int, seed: int) -> Case:
    """Full causal rows except: ``candidates`` (the last L/8 tokens are isolated candidates) and ``jagged``
    (lognormal lengths clipped to 1..L, many short users and a few long ones, up to 4 candidates each)."""
    full, none = [seq_len] * batch, [0] * batch
    if pattern == "causal":
        return Case(pattern, "rel", full, none)
    if pattern == "window":
        return Case(pattern, "rel", full, none, max_attn_len=max(seq_len // 8, 4))
    if pattern == "local-dilated":
        return Case(pattern, "sparse", full, [1] * batch, local_window=min(32, seq_len // 4), dilation=16)
    if pattern == "candidates":
        return Case(pattern, "rel", full, [max(seq_len // 8, 1)] * batch)
    if pattern == "hstu":
        return Case(pattern, "hstu", full, [1] * batch)
    gen = torch.Generator().manual_seed(seed)
    draws = torch.exp(torch.randn(batch, generator=gen) + torch.log(torch.tensor(seq_len / 4.0)))
    lengths = draws.round().clamp(1, seq_len).long().tolist()
    return Case(pattern, "rel", lengths, [min(4, n // 4) for n in lengths])


def make_inputs(case: Case, heads: int, seq_len: int, dim: int, dtype: torch.dtype, device: str,
                seed: int) -> dict:
    """q, k, v [B, H, L, D] in ``dtype``, increasing timestamps, fp32 bias tables (learned parameters)."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(case.lengths)
    q, k, v = (torch.randn(batch, heads, seq_len, dim, generator=gen).to(device, dtype) for _ in range(3))
    steps = torch.randint(1, 10**5, (batch, seq_len), generator=gen)
    return dict(q=q, k=k, v=v, lengths=torch.tensor(case.lengths, device=device),
                num_targets=torch.tensor(case.num_targets, device=device),
                timestamps=(1_700_000_000 + steps.cumsum(dim=1)).to(device),
                pos_bias=torch.randn(seq_len + 1, generator=gen).to(device),
                time_bias=torch.randn(TIME_BUCKETS, generator=gen).to(device))


def allowed_mask(case: Case, inputs: dict) -> Tensor:
    """[B, L, L] bool: the pattern's attended pairs (padded query rows see themselves)."""
    seq_len = inputs["q"].shape[2]
    if case.op == "sparse":
        return sparse_attention_mask(inputs["lengths"], inputs["num_targets"], seq_len, case.local_window,
                                     case.dilation, case.max_attn_len)
    return attention_mask(inputs["lengths"], inputs["num_targets"], seq_len, case.max_attn_len)


def unmasked_pairs(case: Case, inputs: dict) -> int:
    """Attended (query, key) pairs of valid queries, summed over batch and heads."""
    mask = allowed_mask(case, inputs) & valid_tokens(inputs["lengths"], inputs["q"].shape[2]).unsqueeze(2)
    return int(mask.sum()) * inputs["q"].shape[1]


def _op_kwargs(case: Case) -> dict:
    kwargs = dict(max_attn_len=case.max_attn_len)
    if case.op == "sparse":
        kwargs.update(local_window=case.local_window, dilation=case.dilation)
    return kwargs


def _op(case: Case) -> Callable:
    return {"rel": rel_attention, "sparse": sparse_attention, "hstu": hstu_attention}[case.op]


def sdpa_with_bias(case: Case) -> Callable:
    """The existing torch path's recipe for any pattern: SDPA with the mask and the bias in one float tensor."""
    def run(q, k, v, *, lengths, num_targets, timestamps, pos_bias, time_bias, **_):
        seq_len = q.shape[2]
        mask = allowed_mask(case, dict(q=q, lengths=lengths, num_targets=num_targets))
        float_mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, torch.finfo(q.dtype).min)
        float_mask = float_mask + relative_bias(lengths, num_targets, timestamps, pos_bias, time_bias).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask.unsqueeze(1))  # [B, H, L, D]
        return out * valid_tokens(lengths, seq_len).view(-1, 1, seq_len, 1).to(out.dtype)
    return run


def flex(case: Case, device: str) -> Callable:
    """FlexAttention: the bias as a score_mod (gathers from the two tables), the pattern as a block mask."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    attend = torch.compile(flex_attention) if device == "cuda" else flex_attention

    def run(q, k, v, *, lengths, num_targets, timestamps, pos_bias, time_bias, **_):
        B, _, L, _ = q.shape
        n_hist = lengths - num_targets
        P = pos_bias.shape[0]

        def score_mod(score, b, h, i, j):
            gap = (torch.minimum(i, n_hist[b]) - torch.minimum(j, n_hist[b])).clamp(0, P - 1)
            return score + pos_bias[gap] + time_bias[log_time_bucket(timestamps[b, i] - timestamps[b, j])]

        def mask_mod(b, h, i, j):
            pos = torch.minimum(i, n_hist[b])
            ok = ((j <= i) | (i >= n_hist[b])) & (j < n_hist[b]) & (i < lengths[b])
            if case.max_attn_len > 0:
                ok = ok & (pos - j < case.max_attn_len)
            if case.op == "sparse":
                gap = pos - j
                ok = ok & (gap >= 1) & ((gap <= case.local_window) | (gap % case.dilation == 0))
            return ok | (i == j)

        block_mask = create_block_mask(mask_mod, B, None, L, L, device=q.device)
        out = attend(q, k, v, score_mod=score_mod, block_mask=block_mask)
        return out * valid_tokens(lengths, L).view(-1, 1, L, 1).to(out.dtype)
    return run


def triton_jagged(case: Case) -> Callable:
    """Our jagged entry point on the packed valid tokens (packing and unpacking included in the time)."""
    from suan.ops.rel_attention.triton import rel_attention_jagged

    def run(q, k, v, *, lengths, num_targets, timestamps, pos_bias, time_bias, **_):
        B, H, L, D = q.shape
        valid = valid_tokens(lengths, L)  # [B, L]
        offsets = torch.nn.functional.pad(lengths.cumsum(0), (1, 0))  # [B + 1]
        packed = [x.transpose(1, 2)[valid] for x in (q, k, v)]  # [N, H, D]
        out = rel_attention_jagged(*packed, offsets=offsets, num_targets=num_targets, timestamps=timestamps[valid],
                                   max_len=L, pos_bias=pos_bias, time_bias=time_bias, max_attn_len=case.max_attn_len)
        padded = out.new_zeros(B, L, H, D)
        padded[valid] = out
        return padded.transpose(1, 2)  # [B, H, L, D]
    return run


def implementations(case: Case, device: str) -> dict[str, Callable | None]:
    """name -> callable (same keyword interface as the ops), or None when it does not apply."""
    op, kwargs = _op(case), _op_kwargs(case)
    impls: dict[str, Callable | None] = {"triton": lambda **kw: op(**kw, **kwargs, backend="triton")}
    if case.pattern == "jagged":
        impls["triton-jagged"] = triton_jagged(case)
    impls["sdpa"] = None if case.op == "hstu" else sdpa_with_bias(case)
    if case.op == "sparse":
        impls["gather"] = lambda **kw: op(**kw, **kwargs, backend="torch")
    try:
        impls["flex"] = None if case.op == "hstu" else flex(case, device)
    except ImportError:
        impls["flex"] = None
    impls["naive"] = lambda **kw: op(**kw, **kwargs, backend="naive")
    return impls


def call(fn: Callable, inputs: dict, grad_out: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
    """Output (and the gradients of q, k, v and the biases when ``grad_out`` is given)."""
    leaves = {n: inputs[n].detach().requires_grad_(grad_out is not None) for n in GRAD_NAMES}
    out = fn(**{**inputs, **leaves})
    if grad_out is None:
        return out.detach(), {}
    (out.float() * grad_out).sum().backward()
    return out.detach(), {n: t.grad for n, t in leaves.items()}


def mismatch(got: tuple, want: tuple, dtype: torch.dtype) -> str | None:
    """First output or gradient out of tolerance, as a message; None when all agree."""
    for name, value, ref in [("out", got[0], want[0])] + [(n, got[1][n], want[1][n]) for n in got[1]]:
        value, ref = value.float(), ref.float()
        if not torch.isfinite(value).all():
            return f"{name}: non-finite values"
        if dtype == torch.float32:
            if not torch.allclose(value, ref, atol=ATOL_FP32, rtol=RTOL_FP32):
                return f"{name}: max abs diff {(value - ref).abs().max().item():.2e}"
        else:
            err = float((value - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-12))
            if err > RRMS_BF16:
                return f"{name}: relative RMS {err:.2e}"
    return None


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(fn: Callable, inputs: dict, grad_out: Tensor | None, device: str, repeats: int) -> tuple[float, float]:
    """Median milliseconds of ``repeats`` calls and the peak extra MiB of one call (CUDA; nan on CPU). The
    caller has already made one (checked) call: the warm-up that compiled the kernels."""
    peak = float("nan")
    if device == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        call(fn, inputs, grad_out)
        _sync(device)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        call(fn, inputs, grad_out)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, peak


def bench_case(case: Case, args: argparse.Namespace, seq_len: int, dtype: torch.dtype) -> list[dict]:
    """Rows of the table for one (pattern, L): status, times, TFLOP/s, memory of every implementation."""
    inputs = make_inputs(case, args.heads, seq_len, args.head_dim, dtype, args.device, args.seed)
    backward = not args.fwd_only
    gen = torch.Generator().manual_seed(args.seed + 1)
    grad_out = torch.randn(inputs["q"].shape, generator=gen).to(args.device) if backward else None
    upcast = {**inputs, **{n: inputs[n].float() for n in ("q", "k", "v")}}
    reference = call(lambda **kw: _op(case)(**kw, **_op_kwargs(case), backend="naive"), upcast, grad_out)
    # 4·D flops per attended pair forward (QK^T, PV), 8·D backward (dV, dP, dQ, dK)
    fwd_flops = unmasked_pairs(case, inputs) * args.head_dim * 4
    rows = []
    for name, fn in implementations(case, args.device).items():
        row = dict(pattern=case.pattern, L=seq_len, impl=name, status="ok", ms=None, tflops=None, mib=None)
        rows.append(row)
        if fn is None:
            row["status"] = "n/a"
            continue
        # FlexAttention has no backward on CPU: forward only there
        grad = None if (name == "flex" and args.device == "cpu") else grad_out
        if grad is None and backward:
            row["status"] = "fwd only"
        try:
            error = mismatch(call(fn, inputs, grad), (reference[0], reference[1] if grad is not None else {}), dtype)
        except Exception as exc:  # an implementation that cannot run this case is reported, not fatal
            row["status"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
            continue
        if error is not None:
            row["status"] = f"FAIL ({error})"
            continue
        row["ms"], row["mib"] = measure(fn, inputs, grad, args.device, args.repeats)
        row["tflops"] = fwd_flops * (3 if grad is not None else 1) / (row["ms"] * 1e-3) / 1e12
    sdpa = next((r for r in rows if r["impl"] == "sdpa" and r["ms"] is not None and r["status"] == "ok"), None)
    for row in rows:
        comparable = row["ms"] is not None and sdpa is not None and row["status"] == "ok"
        row["vs_sdpa"] = sdpa["ms"] / row["ms"] if comparable else None
    return rows


def table(rows: list[dict], title: str) -> str:
    """Markdown table of the rows."""
    def fmt(value, spec):
        return "-" if value is None or value != value else format(value, spec)

    lines = [f"### {title}", "", "| pattern | L | impl | status | time ms | TFLOP/s | peak MiB | vs SDPA+bias |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['pattern']} | {r['L']} | {r['impl']} | {r['status']} | {fmt(r['ms'], '.3f')} | "
                     f"{fmt(r['tflops'], '.4f')} | {fmt(r['mib'], '.0f')} | {fmt(r['vs_sdpa'], '.2f')}x |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu runs Triton under the interpreter (tiny shapes only)")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default=None, help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--lengths", default=None,
                        help="comma-separated L; default 32,64 on cpu, 128,512,1024,2048,4096,8192 on cuda")
    parser.add_argument("--patterns", default=",".join(PATTERNS), help=f"comma-separated subset of {PATTERNS}")
    parser.add_argument("--fwd-only", action="store_true", help="time the forward pass only")
    parser.add_argument("--batch", type=int, default=None, help="B; default 2 on cpu, 4 on cuda")
    parser.add_argument("--heads", type=int, default=None, help="H; default 2 on cpu, 4 on cuda")
    parser.add_argument("--head-dim", type=int, default=None, help="D; default 16 on cpu, 64 on cuda")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case; default 1 cpu, 10 cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on cpu")
    parser.add_argument("--out", default=None, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    cpu = args.device == "cpu"
    args.dtype = args.dtype or ("fp32" if cpu else "bf16")
    args.lengths = [int(x) for x in (args.lengths or ("32,64" if cpu else "128,512,1024,2048,4096,8192")).split(",")]
    args.patterns = [p for p in args.patterns.split(",") if p]
    unknown = set(args.patterns) - set(PATTERNS)
    if unknown:
        parser.error(f"unknown patterns {sorted(unknown)}; choose from {PATTERNS}")
    args.batch = args.batch or (2 if cpu else 4)
    args.heads = args.heads or (2 if cpu else 4)
    args.head_dim = args.head_dim or (16 if cpu else 64)
    args.repeats = args.repeats or (1 if cpu else 10)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        # the interpreter must be chosen before suan's Triton kernels are first imported (they are imported
        # lazily by the ops' dispatch, i.e. after this line)
        os.environ.setdefault("TRITON_INTERPRET", "1")
        torch.set_num_threads(args.threads)
    elif not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    rows = []
    for pattern in args.patterns:
        for seq_len in args.lengths:
            case = make_case(pattern, args.batch, seq_len, args.seed)
            rows.extend(bench_case(case, args, seq_len, dtype))
            if args.device == "cuda":
                torch.cuda.empty_cache()
    mode = "fwd" if args.fwd_only else "fwd+bwd"
    title = (f"{mode}, {args.device}, {args.dtype}, B={args.batch} H={args.heads} D={args.head_dim} "
             f"(TFLOP/s over unmasked pairs only)")
    text = table(rows, title)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return 1 if any(r["status"].startswith("FAIL") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
