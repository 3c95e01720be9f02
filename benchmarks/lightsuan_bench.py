"""LightSUAN inference: candidate-parallel scoring, sparse vs dense attention, LightSUAN vs SUAN.

A benchmark, not a test: every figure is a ratio against a baseline timed in the same run.
(a) scoring C candidates for one user with L = 200: one candidate-parallel pass vs one pass per
    candidate (correctness-gated: the scores must agree within 1e-5);
(b) sparse (local + dilated, gather path) vs dense attention forward time as L grows;
(c) LightSUAN vs SUAN inference time at their grades (same history, C = 100).

    .venv/bin/python -m benchmarks.lightsuan_bench --help
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from features.schema import FeatureMap, FieldSpec
from suan.config import ModelConfig
from suan.mixers.sparse_attn import SparseOptions
from suan.models.counts import example_batch
from suan.models.ctr import build_model
from suan.ops.rel_attention import rel_attention
from suan.ops.sparse_attention import sparse_attention


def bench_fmap(max_len: int) -> FeatureMap:
    """A feature map shaped like the synthetic data (vocabularies of realistic size)."""
    fields = [FieldSpec(name=n, role="user", vocab=n, vocab_size=s) for n, s in (("user_id", 10_000), ("age", 7))]
    fields += [FieldSpec(name="hour", role="context", vocab="hour", vocab_size=26),
               FieldSpec(name="hist_len_log1p", role="dense"),
               FieldSpec(name="hist_item_id", role="seq", vocab="item_id", vocab_size=50_000),
               FieldSpec(name="hist_cate_id", role="seq", vocab="cate_id", vocab_size=200),
               FieldSpec(name="hist_ts", role="seq_time"),
               FieldSpec(name="item_id", role="target", vocab="item_id", vocab_size=50_000),
               FieldSpec(name="cate_id", role="target", vocab="cate_id", vocab_size=200),
               FieldSpec(name="target_ts", role="target_time"), FieldSpec(name="label", role="label")]
    return FeatureMap(dataset="bench", protocol="bench", max_seq_len=max_len, fields=tuple(fields))


def timed(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def user_batch(fmap: FeatureMap, L: int, C: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    batch = example_batch(fmap, L, batch=1)
    batch["hist_item_id"] = torch.randint(2, 50_000, (1, L))
    batch["hist_cate_id"] = torch.randint(2, 200, (1, L))
    batch["item_id"] = torch.randint(2, 50_000, (1, C))
    batch["cate_id"] = torch.randint(2, 200, (1, C))
    return batch


def candidate_parallel(args) -> None:
    fmap = bench_fmap(args.length)
    model = build_model(ModelConfig.from_grade("lightsuan", args.student_grade, seq_len=args.length), fmap).eval()
    print(f"(a) candidate-parallel vs one pass per candidate — LightSUAN g{args.student_grade}, L = {args.length}")
    for C in (100, 1000):
        batch = user_batch(fmap, args.length, C)
        singles = [{**batch, "item_id": batch["item_id"][:, c], "cate_id": batch["cate_id"][:, c]} for c in range(C)]
        with torch.no_grad():
            together = model(batch)[0]
            alone = torch.stack([model(s)[0] for s in singles[:50]])
            if not torch.allclose(together[:50], alone, atol=1e-5, rtol=0):
                print("MISMATCH: candidate-parallel scores differ from one-at-a-time scores")
                sys.exit(1)
            t_par = timed(lambda b=batch: model(b), args.repeats)
            t_one = timed(lambda s=singles: [model(x) for x in s], 1)
        print(f"    C = {C:>4}: parallel {t_par * 1e3:8.1f} ms   one pass each {t_one * 1e3:9.1f} ms   "
              f"speed-up {t_one / t_par:6.1f}x")


def sparse_vs_dense(args) -> None:
    print(f"(b) attention forward, sparse (k = {args.window}, r = {args.dilation}) vs dense, B = 1, H = 2, D = 32")
    for L in (200, 500, 1000, 2000, 4000):
        torch.manual_seed(0)
        q, k, v = (torch.randn(1, 2, L, 32) for _ in range(3))
        common = dict(lengths=torch.tensor([L]), num_targets=torch.tensor([1]),
                      timestamps=torch.arange(L).unsqueeze(0) * 60, pos_bias=torch.zeros(L + 1),
                      time_bias=torch.zeros(128))
        with torch.no_grad():
            dense = timed(lambda q=q, k=k, v=v, c=common: rel_attention(q, k, v, backend="torch", **c),
                          args.repeats)
            sparse = timed(lambda q=q, k=k, v=v, c=common: sparse_attention(
                q, k, v, local_window=args.window, dilation=args.dilation, backend="torch", **c), args.repeats)
        print(f"    L = {L:>4}: dense {dense * 1e3:8.2f} ms   sparse {sparse * 1e3:8.2f} ms   dense/sparse {dense / sparse:5.2f}x")


def light_vs_suan(args) -> None:
    fmap = bench_fmap(args.length)
    batch = user_batch(fmap, args.length, 100)
    times = {}
    for arch, grade in (("suan", args.teacher_grade), ("suan", args.student_grade), ("lightsuan", args.student_grade)):
        # the sparse pattern is LightSUAN's own option (SUAN's full attention has none)
        sparse = SparseOptions(window=args.window, dilation=args.dilation) if arch == "lightsuan" else {}
        model = build_model(ModelConfig.from_grade(arch, grade, seq_len=args.length, mixer_options=sparse), fmap).eval()
        with torch.no_grad():
            times[(arch, grade)] = timed(lambda m=model: m(batch), args.repeats)
    base = times[("suan", args.teacher_grade)]
    print(f"(c) inference, one user x 100 candidates, L = {args.length} (ratio vs SUAN g{args.teacher_grade})")
    for (arch, grade), t in times.items():
        print(f"    {arch:<9} g{grade}: {t * 1e3:8.1f} ms   {base / t:5.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=200, help="history length L for (a) and (c)")
    parser.add_argument("--student-grade", type=int, default=1)
    parser.add_argument("--teacher-grade", type=int, default=3)
    parser.add_argument("--window", type=int, default=32, help="local window k")
    parser.add_argument("--dilation", type=int, default=16, help="dilation r")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    candidate_parallel(args)
    sparse_vs_dense(args)
    light_vs_suan(args)


if __name__ == "__main__":
    main()
