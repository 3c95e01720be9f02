"""Benchmark of the feature preparation (``features.prepare.prepare``) on synthetic events.

This is a benchmark, not a test: it prints wall time, throughput and peak memory and never fails on
them. It exits non-zero only when our pipeline and the pandas reference disagree on the number of
samples per split, because then the speed ratio would compare different work.

Steps:
  1. generate ``--users`` x ``--events-per-user`` synthetic events (default 100k x 100 = ~10M);
  2. run ``prepare(load_synthetic(dir), time-split with L=--max-seq-len)`` in a fresh child process
     and read its peak RSS (``ru_maxrss`` from ``os.wait4`` on it; psutil polling as a cross-check);
  3. on the first ``--baseline-users`` users, run a plain pandas implementation of the same protocol
     and ``prepare`` in this process, check the per-split sample counts agree and print the ratio.

Run from the repository root::

    .venv/bin/python -m benchmarks.features_bench --help
    .venv/bin/python -m benchmarks.features_bench --users 5000 --events-per-user 50
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from features.prepare import prepare
from features.protocols import PROTOCOLS, ProtocolConfig
from features.sources.synthetic import SynthConfig, generate, load_synthetic

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_SAMPLES_PER_MIN = 1_000_000
TARGET_PEAK_MB = 4096
MIB = 1024 * 1024
PROTOCOL = "time-split"

# The child imports only what prepare needs (no pandas, no benchmark module), so its peak RSS is the
# interpreter + polars/pyarrow + the loaded log + prepare, and nothing the benchmark itself holds.
CHILD_CODE = """
import json, resource, sys, time
from features.prepare import prepare
from features.protocols import PROTOCOLS
from features.sources.synthetic import load_synthetic
src, out, max_len, protocol = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t0 = time.perf_counter()
raw = load_synthetic(src)
t1 = time.perf_counter()
rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
stats = prepare(raw, PROTOCOLS[protocol].replace(max_seq_len=max_len), out, progress=False)
t2 = time.perf_counter()
print(json.dumps({"events": stats["events"], "load_s": t1 - t0, "prepare_s": t2 - t1,
                  "rss_after_load_kib": rss_after_load,
                  "rows": {k: v.get("rows", 0) for k, v in stats["splits"].items()}}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100_000, help="synthetic users (default: 100000)")
    p.add_argument("--events-per-user", type=int, default=100, help="mean events per user (default: 100)")
    p.add_argument("--max-seq-len", type=int, default=100, help="history length L (default: 100)")
    p.add_argument("--baseline-users", type=int, default=2000,
                   help="users (user_id < N) in the pandas comparison subset (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed (default: 0)")
    p.add_argument("--workdir", type=Path, default=None, help="where data is written (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated and prepared files")
    return p.parse_args(argv)


def protocol(max_len: int) -> ProtocolConfig:
    return PROTOCOLS[PROTOCOL].replace(max_seq_len=max_len)


def rows_per_split(stats: dict) -> dict[str, int]:
    """Sample count per split from the stats ``prepare`` returns (read back from the shards)."""
    return {name: int(s.get("rows", 0)) for name, s in stats["splits"].items()}


# ---------------------------------------------------------------- full-size run in a child process


def _poll_rss(pid: int, peak: list[int], stop: threading.Event) -> None:
    """Keep ``peak[0]`` at the largest RSS seen for ``pid`` (and its children) until ``stop``."""
    try:
        proc = psutil.Process(pid)
        while not stop.is_set():
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            peak[0] = max(peak[0], rss)
            stop.wait(0.05)
    except psutil.Error:
        pass  # the child ended between two polls: the peak so far is what we have


def run_prepare_child(src: Path, out: Path, max_len: int) -> dict:
    """Run load + prepare in a fresh interpreter; return its timings, counts and peak RSS."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-c", CHILD_CODE, str(src), str(out), str(max_len), PROTOCOL]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    peak, stop = [0], threading.Event()
    poller = threading.Thread(target=_poll_rss, args=(proc.pid, peak, stop), daemon=True)
    poller.start()
    stdout = proc.stdout.read()  # stderr passes through so a traceback is visible
    proc.stdout.close()
    # wait4 returns the rusage of this one child (ru_maxrss in KiB on Linux). RUSAGE_CHILDREN would be
    # the max over every child ever reaped, and generate() already ran `git` children via provenance().
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # we reaped it ourselves; tell Popen
    stop.set()
    poller.join()
    if proc.returncode != 0:
        raise SystemExit(f"prepare child failed with exit code {proc.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_kib"] = usage.ru_maxrss
    result["polled_peak_bytes"] = peak[0]
    return result


# ---------------------------------------------------------------- comparison subset


def write_subset(src: Path, dst: Path, n_users: int) -> None:
    """A synthetic folder with only the events and profiles of ``user_id < n_users``, rows in order."""
    (dst / "events").mkdir(parents=True, exist_ok=True)
    parts = sorted((src / "events").glob("*.parquet"))  # same order load_synthetic reads them in
    pl.scan_parquet(parts).filter(pl.col("user_id") < n_users).sink_parquet(dst / "events" / "part-00000.parquet")
    pl.read_parquet(src / "users.parquet").filter(pl.col("user_id") < n_users).write_parquet(dst / "users.parquet")
    shutil.copy(src / "items.parquet", dst / "items.parquet")


def read_events_pandas(src: Path) -> pd.DataFrame:
    """All events of a synthetic folder as pandas, with ``row`` = position in file order."""
    parts = sorted((src / "events").glob("*.parquet"))
    df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    df["row"] = np.arange(len(df), dtype=np.int64)
    return df


def _user_samples(g: pd.DataFrame, max_len: int) -> list[tuple]:
    """Samples of one user whose events are sorted by (timestamp, row).

    History = the user's events with a strictly smaller timestamp, the last ``max_len`` of them; an
    event with an empty history is not a sample.
    """
    ts, items, rows, labels = (g[c].tolist() for c in ("timestamp", "item_id", "row", "label"))
    user = g["user_id"].iat[0]
    out = []
    for i in range(len(ts)):
        end = bisect_left(ts, ts[i])  # first event at this timestamp: all before it are strictly earlier
        if end == 0:
            continue
        start = max(0, end - max_len)
        out.append((user, items[i], ts[i], rows[i], labels[i], items[start:end], ts[start:end]))
    return out


def _encode_and_write(splits: dict[str, pd.DataFrame], out: Path) -> None:
    """Item ids → dense ids (0 pad, 1 OOV) fitted on train targets and histories; one parquet per split."""
    train = splits["train"]
    vocab: dict[int, int] = {}
    for item in itertools.chain(train["item"], itertools.chain.from_iterable(train["hist_item"])):
        vocab.setdefault(item, len(vocab) + 2)
    out.mkdir(parents=True, exist_ok=True)
    for name, df in splits.items():
        df = df.copy()
        df["item"] = df["item"].map(lambda x: vocab.get(x, 1))
        df["hist_item"] = df["hist_item"].apply(lambda h: [vocab.get(x, 1) for x in h])
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), out / f"{name}.parquet")


def pandas_reference(events: pd.DataFrame, proto: ProtocolConfig, out: Path) -> dict[str, int]:
    """A straightforward pandas implementation of the time-split protocol; returns rows per split."""
    ev = events.sort_values(["user_id", "timestamp", "row"], kind="mergesort")
    records = []
    for _, g in ev.groupby("user_id", sort=False):
        records.extend(_user_samples(g, proto.max_seq_len))
    cols = ["user", "item", "target_ts", "row", "label", "hist_item", "hist_ts"]
    samples = pd.DataFrame.from_records(records, columns=cols)
    # global time split: samples ordered by (target timestamp, row), first 80% train, 10% valid, rest test
    samples = samples.sort_values(["target_ts", "row"], kind="mergesort").reset_index(drop=True)
    n = len(samples)
    n_train, n_valid = int(n * proto.train_frac), int(n * (proto.train_frac + proto.valid_frac))
    splits = {"train": samples.iloc[:n_train], "valid": samples.iloc[n_train:n_valid], "test": samples.iloc[n_valid:]}
    _encode_and_write(splits, out)
    return {name: len(df) for name, df in splits.items()}


def compare_on_subset(src: Path, work: Path, n_users: int, max_len: int) -> dict:
    """Time pandas and ``prepare`` on the same subset (input reading excluded from both timings)."""
    sub = work / "subset"
    write_subset(src, sub, n_users)
    proto = protocol(max_len)
    events = read_events_pandas(sub)
    t0 = time.perf_counter()
    ref_rows = pandas_reference(events, proto, work / "subset_pandas")
    pandas_s = time.perf_counter() - t0
    raw = load_synthetic(sub)
    t0 = time.perf_counter()
    ours_rows = rows_per_split(prepare(raw, proto, work / "subset_ours", progress=False))
    ours_s = time.perf_counter() - t0
    return {"events": len(events), "pandas_rows": ref_rows, "ours_rows": ours_rows,
            "pandas_s": pandas_s, "ours_s": ours_s}


# ---------------------------------------------------------------- reporting


def _fmt_rate(samples: int, seconds: float) -> tuple[float, float]:
    per_s = samples / seconds if seconds > 0 else float("inf")
    return per_s, per_s * 60


def print_full(res: dict, gen_s: float) -> tuple[int, float, float]:
    """Print the full-run details; returns (samples, samples/min, peak MB)."""
    samples = sum(res["rows"].values())
    per_s, per_min = _fmt_rate(samples, res["prepare_s"])
    peak_mb = res["peak_rss_kib"] / 1024  # ru_maxrss is KiB on Linux; MB here means 2**20 bytes
    print(f"generate: {gen_s:.1f}s   load_synthetic: {res['load_s']:.1f}s   prepare: {res['prepare_s']:.1f}s")
    print(f"rows per split: {res['rows']}")
    print("peak RSS method: ru_maxrss from os.wait4() on a fresh `python -c` child that only loads and prepares")
    print(f"  cross-check, psutil RSS polled every 50 ms: {res['polled_peak_bytes'] / MIB:,.0f} MB; "
          f"peak after load_synthetic alone: {res['rss_after_load_kib'] / 1024:,.0f} MB")
    return samples, per_min, peak_mb


def print_subset(cmp: dict, n_users: int) -> tuple[float, bool]:
    """Print the subset comparison; returns (ratio ours/pandas in samples/s, counts match)."""
    match = cmp["pandas_rows"] == cmp["ours_rows"]
    samples = sum(cmp["ours_rows"].values())
    ours_per_s, _ = _fmt_rate(samples, cmp["ours_s"])
    pandas_per_s, _ = _fmt_rate(sum(cmp["pandas_rows"].values()), cmp["pandas_s"])
    print(f"subset user_id < {n_users}: events={cmp['events']:,}, samples={samples:,}")
    print(f"  ours:   {cmp['ours_s']:.2f}s  {ours_per_s:,.0f} samples/s  rows={cmp['ours_rows']}")
    print(f"  pandas: {cmp['pandas_s']:.2f}s  {pandas_per_s:,.0f} samples/s  rows={cmp['pandas_rows']}")
    print("  note: ours writes every feature column (profile, context, cate/action/ts histories, dense, stats);"
          " the pandas reference writes item and timestamp histories only")
    if not match:
        print(f"MISMATCH: samples per split differ: ours={cmp['ours_rows']} pandas={cmp['pandas_rows']}")
    return ours_per_s / pandas_per_s, match


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    temp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="features_bench_")) if temp else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    src = work / "synth"
    try:
        t0 = time.perf_counter()
        cfg = SynthConfig(users=args.users, events_per_user=args.events_per_user, seed=args.seed)
        generate(cfg, src, progress=False)
        gen_s = time.perf_counter() - t0
        full = run_prepare_child(src, work / "prepared", args.max_seq_len)
        samples, per_min, peak_mb = print_full(full, gen_s)
        cmp = compare_on_subset(src, work, args.baseline_users, args.max_seq_len)
        ratio, match = print_subset(cmp, args.baseline_users)
        ok = per_min >= TARGET_SAMPLES_PER_MIN and peak_mb <= TARGET_PEAK_MB
        print("=" * 100)
        print(f"events={full['events']:,}, samples={samples:,}, prepare wall={full['prepare_s']:.1f}s, "
              f"samples/s={per_min / 60:,.0f}, samples/min={per_min:,.0f}, peak RSS={peak_mb:,.0f} MB "
              f"(L={args.max_seq_len}, protocol={PROTOCOL})")
        print(f"target: >= {TARGET_SAMPLES_PER_MIN:,} samples/min and <= {TARGET_PEAK_MB} MB peak -> "
              f"{'PASS' if ok else 'MISS'}")
        print(f"subset ratio vs pandas: {ratio:.1f}x" + ("" if match else "  (MISMATCH in sample counts)"))
        print("=" * 100)
        return 0 if match else 1
    finally:
        if args.keep:
            print(f"files kept under {work}")
        elif temp:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for name in ("synth", "prepared", "subset", "subset_pandas", "subset_ours"):
                shutil.rmtree(work / name, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
