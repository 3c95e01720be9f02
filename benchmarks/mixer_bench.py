"""Every registered mixer as SUAN's self-attention: inference per 100 candidates, training speed, memory.

A benchmark, not a test: every figure is also printed as a ratio against SUAN's default mixer
(``softmax_rel``) measured in the same run. For each mixer and history length L, a fresh child
process builds SUAN at one grade with that mixer and measures
  infer ms   one user, C = 100 candidates scored in one candidate-parallel pass (median);
  train /s   training samples per second (forward + backward + AdamW step, full-length histories);
  peak MB    the child's peak RSS (torch, model, activations, optimiser state);
  train MB   that peak minus the RSS just before training: what the training steps added.
Each case runs alone in its own process so its peak RSS is its own. Inputs are random ids with
full-length histories: the figures are about cost, not accuracy.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.mixer_bench --help
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks.child import run_child

BASELINE = "softmax_rel"

CHILD = r"""
import json, resource, sys, time, torch
from benchmarks.lightsuan_bench import bench_fmap, timed, user_batch
from suan.config import ModelConfig
from suan.models.counts import example_batch
from suan.models.ctr import build_model
mixer, L, grade, batch_size, steps, repeats = sys.argv[1], *map(int, sys.argv[2:7])
torch.manual_seed(0)
fmap = bench_fmap(L)
model = build_model(ModelConfig.from_grade("suan", grade, mixer=mixer, seq_len=L), fmap)
one_user = user_batch(fmap, L, 100)  # (1, L) history, (1, C=100) candidates
model.eval()
with torch.no_grad():
    infer_s = timed(lambda: model(one_user), repeats)
model.train()
rss_before_mb = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20
batch = example_batch(fmap, L, batch=batch_size)  # (B, L) full-length histories
batch["hist_item_id"] = torch.randint(2, 50_000, (batch_size, L))
batch["label"] = torch.randint(0, 2, (batch_size,)).float()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
def step():
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch["label"])
    opt.zero_grad(); loss.backward(); opt.step()
step()  # warm-up
t0 = time.perf_counter()
for _ in range(steps):
    step()
train_s = (time.perf_counter() - t0) / steps
print(json.dumps({"infer_ms": infer_s * 1e3, "train_per_s": batch_size / train_s,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "train_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before_mb,
                  "params": sum(p.numel() for p in model.parameters())}))
"""


def run_case(mixer: str, L: int, args: argparse.Namespace) -> dict:
    """Measure one (mixer, L) in a fresh child process; ``{"error": ...}`` if the mixer fails there."""
    batch = max(1, args.tokens_per_batch // L)  # same tokens per step at every L
    return run_child(CHILD, mixer, L, args.grade, batch, args.steps, args.repeats)


def ratio(r: dict, base: dict, key: str) -> float:
    """``r[key] / base[key]``, NaN when the baseline did not run."""
    return r[key] / base[key] if base and "error" not in base else float("nan")


def print_table(L: int, results: dict[str, dict]) -> None:
    base = results.get(BASELINE, {})
    print(f"\nL = {L}   (x base = ratio to {BASELINE} in this run; lower is better for ms and MB)")
    print(f"{'mixer':<16} {'infer ms/100c':>13} {'x base':>7} {'train /s':>9} {'x base':>7} {'peak MB':>8} {'train MB':>9} {'x base':>7}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<16} failed: {r['error']}")
            continue
        print(f"{name:<16} {r['infer_ms']:>13.2f} {ratio(r, base, 'infer_ms'):>7.2f} {r['train_per_s']:>9.0f} "
              f"{ratio(r, base, 'train_per_s'):>7.2f} {r['peak_mb']:>8.0f} {r['train_mb']:>9.0f} "
              f"{ratio(r, base, 'train_mb'):>7.2f}")


def main() -> None:
    from suan.mixers.registry import MIXERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="50,1000", help="history lengths L, comma-separated")
    parser.add_argument("--grade", type=int, default=1)
    parser.add_argument("--mixers", default="", help="comma-separated (default: every registered mixer)")
    parser.add_argument("--tokens-per-batch", type=int, default=16_000, help="B = this // L for the training steps")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per case")
    parser.add_argument("--repeats", type=int, default=10, help="timed inference passes per case")
    parser.add_argument("--json", default="", help="also write every figure to this JSON file")
    args = parser.parse_args()
    names = [m for m in args.mixers.split(",") if m] or sorted(MIXERS, key=lambda m: (m != BASELINE, m))
    everything = {}
    for L in (int(x) for x in args.lengths.split(",")):
        results = {}
        for name in names:
            results[name] = run_case(name, L, args)
            print(f"  measured {name} at L = {L}", file=sys.stderr, flush=True)
        print_table(L, results)
        everything[str(L)] = results
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh, indent=1)


if __name__ == "__main__":
    main()
