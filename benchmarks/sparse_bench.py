"""Forward time of LightSUAN sparse attention (gather path) vs dense ``rel_attention`` (SDPA) as L grows.

A benchmark, not a test: it prints a table of median forward times and the ratio dense / sparse per
length, measured in the same process on one intra-op thread. It first checks the sparse gather path
against its dense-mask reference on a small case (outputs and gradients) and prints MISMATCH and exits
with status 1 if they disagree, because then the timing would compare different work.

Run from the repository root::

    .venv/bin/python -m benchmarks.sparse_bench --help
    .venv/bin/python -m benchmarks.sparse_bench --lengths 200,500,1000,2000,4000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial

import torch

from suan.ops.common.masks import TIME_BUCKETS
from suan.ops.rel_attention import rel_attention
from suan.ops.sparse_attention import sparse_attention, sparse_offsets

# the correctness gate: fp32 gather path vs the reference, as in tests/suan/ops/test_sparse_attention.py
ATOL = 1e-5
RTOL = 1e-4


def make_inputs(batch: int, heads: int, seq_len: int, dim: int, seed: int, requires_grad: bool = False) -> dict:
    """Full rows (``lengths = L``) ending in one candidate, increasing timestamps, random biases."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, seq_len, dim, generator=gen).requires_grad_(requires_grad)
               for _ in range(3))
    steps = torch.randint(1, 10**5, (batch, seq_len), generator=gen)
    return dict(q=q, k=k, v=v, lengths=torch.full((batch,), seq_len), num_targets=torch.ones(batch, dtype=torch.long),
                timestamps=1_700_000_000 + steps.cumsum(dim=1),
                pos_bias=torch.randn(seq_len + 1, generator=gen).requires_grad_(requires_grad),
                time_bias=torch.randn(TIME_BUCKETS, generator=gen).requires_grad_(requires_grad))


def check_correctness(local_window: int, dilation: int) -> str | None:
    """Sparse ``torch`` vs ``naive`` on a small ragged batch; a message on mismatch, else None."""
    inputs = make_inputs(3, 2, 97, 16, seed=0, requires_grad=True)
    inputs["lengths"], inputs["num_targets"] = torch.tensor([97, 50, 1]), torch.tensor([3, 0, 1])
    leaves = ("q", "k", "v", "pos_bias", "time_bias")
    results = []
    for backend in ("naive", "torch"):
        out = sparse_attention(**inputs, local_window=local_window, dilation=dilation, backend=backend)
        grads = torch.autograd.grad(out.square().sum(), [inputs[name] for name in leaves])
        results.append([out.detach(), *grads])
    for name, want, got in zip(["out", *leaves], *results, strict=True):
        if not torch.allclose(got, want, atol=ATOL, rtol=RTOL):
            return f"{name}: max abs diff {(got - want).abs().max().item():.3e}"
    return None


def median_time(fn, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--lengths", default="200,500,1000,2000,4000", help="comma-separated sequence lengths L")
    parser.add_argument("--local-window", type=int, default=32, help="k: previous positions every query sees")
    parser.add_argument("--dilation", type=int, default=16, help="r: every r-th earlier position is seen too")
    parser.add_argument("--batch", type=int, default=4, help="B")
    parser.add_argument("--heads", type=int, default=2, help="H")
    parser.add_argument("--head-dim", type=int, default=32, help="D")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    error = check_correctness(args.local_window, args.dilation)
    if error is not None:
        print(f"MISMATCH sparse torch vs naive (k={args.local_window}, r={args.dilation}): {error}")
        return 1
    print(f"correctness: sparse torch == naive (k={args.local_window}, r={args.dilation}, L=97, fp32)")
    print(f"forward, B={args.batch} H={args.heads} D={args.head_dim} k={args.local_window} r={args.dilation}, "
          f"{args.threads} thread(s), median of {args.repeats}")
    print(f"{'L':>6} {'K slots':>8} {'dense ms':>10} {'sparse ms':>10} {'dense/sparse':>13}")
    for seq_len in (int(x) for x in args.lengths.split(",")):
        inputs = make_inputs(args.batch, args.heads, seq_len, args.head_dim, seed=seq_len)
        slots = sparse_offsets(seq_len, args.local_window, args.dilation).numel()
        with torch.no_grad():
            dense = median_time(partial(rel_attention, **inputs, backend="torch"), args.repeats)
            sparse = median_time(partial(sparse_attention, **inputs, local_window=args.local_window,
                                         dilation=args.dilation, backend="torch"), args.repeats)
        print(f"{seq_len:>6} {slots:>8} {dense * 1e3:>10.1f} {sparse * 1e3:>10.1f} {dense / sparse:>12.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
