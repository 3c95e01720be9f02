"""Training throughput and peak memory: SUAN at three grades, reference vs fast attention, BST at equal width,
length chunks off vs on (rows of similar history length encoded together, same math), and
length-bucketed batches.

A benchmark, not a test: it prints samples/s and peak RSS per case and ratios against the
baseline case measured in the same run (SUAN on the ``naive`` reference path). Each case runs in a
fresh child process so its peak RSS is its own.

    .venv/bin/python -m benchmarks.train_bench --help
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.child import run_child

CHILD = r"""
import json, resource, sys, time, torch
from suan.config import ModelConfig
from suan.models.ctr import build_model
from pipelines.datamodule import ShardDataModule
data, arch, grade, backend, steps, batch, bucket, chunk, wiring = sys.argv[1:10]
torch.manual_seed(0)
dm = ShardDataModule(data, batch_size=int(batch), bucket_by_length=bucket == "1")
batches = []
for b in dm.stream("train", shuffle=True):
    batches.append(b)
    if len(batches) == 32:  # enough batches that their history widths are representative
        break
cfg = ModelConfig.from_grade(arch, int(grade), seq_fields=len(dm.fmap.by_role("seq")), backend=backend,
                             seq_len=min(dm.fmap.max_seq_len, 50), chunk_by_length=chunk == "1", wiring=wiring)
model = build_model(cfg, dm.fmap)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
def step(b):
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b), b["label"])
    opt.zero_grad(); loss.backward(); opt.step()
for b in batches[:2]:
    step(b)  # warm-up
t0 = time.perf_counter()
for i in range(int(steps)):
    step(batches[i % len(batches)])
dt = time.perf_counter() - t0
print(json.dumps({"samples_per_s": int(steps) * int(batch) / dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "params": sum(p.numel() for p in model.parameters()),
                  "mean_width": sum(int(b["hist_len"].max()) for b in batches) / len(batches)}))
"""

CASES = [  # (label, arch, grade, backend, length-bucketed batches, length chunks, block wiring)
    ("suan g1 naive", "suan", 1, "naive", False, True, "branches"),
    ("suan g1 torch", "suan", 1, "torch", False, True, "branches"),
    ("suan g2 unchunked", "suan", 2, "torch", False, False, "branches"),
    ("suan g2 torch", "suan", 2, "torch", False, True, "branches"),
    ("suan g2 authors", "suan", 2, "torch", False, True, "authors"),
    ("suan g2 bucket", "suan", 2, "torch", True, True, "branches"),
    ("suan g3 naive", "suan", 3, "naive", False, True, "branches"),
    ("suan g3 torch", "suan", 3, "torch", False, True, "branches"),
    ("bst  g3 torch", "bst", 3, "torch", False, True, "branches"),
]


def run_case(data: Path, arch: str, grade: int, backend: str, bucket: bool, chunk: bool, wiring: str, steps: int,
             batch: int) -> dict:
    result = run_child(CHILD, data, arch, grade, backend, steps, batch, int(bucket), int(chunk), wiring)
    if "error" in result:
        raise RuntimeError(f"{arch} g{grade} {backend}: {result['error']}")
    return result


def ensure_data(workdir: Path) -> Path:
    from features.prepare import prepare
    from features.protocols import PROTOCOLS
    from features.sources.synthetic import SynthConfig, generate, load_synthetic

    data = workdir / "data"
    if not (data / "feature_map.json").exists():
        generate(SynthConfig(users=1000, events_per_user=60), workdir / "raw", progress=False)
        prepare(load_synthetic(workdir / "raw"), PROTOCOLS["time-split"], data, progress=False)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="prepared folder (default: a synthetic one)")
    parser.add_argument("--steps", type=int, default=30, help="timed optimiser steps per case")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per step (suan train's default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or ensure_data(Path(tmp))
        results = {case[0]: run_case(data, *case[1:], args.steps, args.batch_size) for case in CASES}
    base = results[CASES[0][0]]
    print(f"{'case':<18} {'params':>10} {'width':>6} {'samples/s':>10} {'x base':>7} {'peak RSS MB':>12} {'x base':>7}")
    for label, r in results.items():
        print(f"{label:<18} {r['params']:>10,} {r['mean_width']:>6.1f} {r['samples_per_s']:>10.0f} "
              f"{r['samples_per_s'] / base['samples_per_s']:>7.2f} {r['peak_rss_mb']:>12.0f} "
              f"{r['peak_rss_mb'] / base['peak_rss_mb']:>7.2f}")
    g3n, g3t, bst = (results[k] for k in ("suan g3 naive", "suan g3 torch", "bst  g3 torch"))
    g2u, g2, g2b = results["suan g2 unchunked"], results["suan g2 torch"], results["suan g2 bucket"]
    print(f"fast/reference at grade 3: {g3t['samples_per_s'] / g3n['samples_per_s']:.2f}x speed, "
          f"{g3t['peak_rss_mb'] / g3n['peak_rss_mb']:.2f}x memory; SUAN/BST at equal width: "
          f"{g3t['samples_per_s'] / bst['samples_per_s']:.2f}x speed")
    print(f"grade 2, the authors' block wiring: {results['suan g2 authors']['samples_per_s'] / g2['samples_per_s']:.2f}x "
          "the speed of the branch wiring")
    print(f"grade 2, vs one padded pass per batch: length chunks {g2['samples_per_s'] / g2u['samples_per_s']:.2f}x "
          f"speed, bucketed batches {g2b['samples_per_s'] / g2u['samples_per_s']:.2f}x (mean batch width "
          f"{g2b['mean_width']:.1f} vs {g2['mean_width']:.1f})")


if __name__ == "__main__":
    main()
