"""Scoring-service latency and throughput on loopback, against eager PyTorch in the same run.

A benchmark, not a test. It builds a synthetic dataset with L = 200, exports an untrained low-grade
model (LightSUAN when the ``sparse`` mixer is registered, else SUAN: latency does not depend on the
weights), then measures with the same requests (1 user, C candidates, a 200-behaviour history):

- eager PyTorch in this process, one request at a time (the reference, 1 intra-op thread);
- ONNX Runtime in this process without HTTP (the model call plus the online feature path);
- the real service (``suan serve`` in a subprocess) with 1 client (latency without queueing), under K
  concurrent closed-loop clients (saturation: throughput, and latency that is mostly queueing) and under
  K clients sending an open-loop Poisson stream at a fixed total rate (latency at a set load, the figure a
  latency target is stated for), with 1 and with 2 ONNX Runtime intra-op threads.

It prints p50/p99 latency, throughput and errors per case with ratios against eager PyTorch, and
exits with status 1 if any HTTP request failed. Clients and server share the machine's cores.

    .venv/bin/python -m benchmarks.serving_bench --help
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from serving.heap import settle_heap

REPO = Path(__file__).resolve().parents[1]


def build_serving_folder(work: Path, arch: str, grade: int, seq_len: int) -> tuple[Path, Path, str]:
    """Synthetic data (L = ``seq_len``), an untrained model of ``arch``/``grade`` and its export."""
    import torch

    from features.prepare import prepare
    from features.protocols import PROTOCOLS
    from features.schema import FeatureMap
    from features.sources.synthetic import SynthConfig, generate, load_synthetic
    from pipelines.artifacts import save_model_dir
    from pipelines.onnx_export import export_model_dir
    from suan.config import ModelConfig
    from suan.mixers.registry import MIXERS
    from suan.models.ctr import build_model

    if arch == "auto":
        arch = "lightsuan" if "sparse" in MIXERS else "suan"
    data = work / "data"
    generate(SynthConfig(users=300, items=500, events_per_user=60, seed=0), work / "raw", progress=False)
    prepare(load_synthetic(work / "raw"), PROTOCOLS["time-split"].replace(max_seq_len=seq_len), data,
            progress=False)
    torch.manual_seed(0)
    fmap = FeatureMap.load(data / "feature_map.json")
    cfg = ModelConfig.from_grade(arch, grade, seq_len=seq_len)
    save_model_dir(work / "model", build_model(cfg, fmap).eval(), cfg, data)
    export_model_dir(work / "model", work / "serving")
    return work / "model", work / "serving", f"{arch} grade {grade} (L={seq_len}, untrained)"


def make_requests(space, n: int, n_cand: int, n_hist: int, seed: int = 0) -> list[dict]:
    """``n`` distinct requests with raw ids drawn from the model's vocabularies."""
    from serving.service import allowed_fields

    rng = np.random.default_rng(seed)
    fields = allowed_fields(space)
    vocab_of = {f.name: f.vocab for f in space.fmap.fields if f.vocab}
    values = {v: list(space.lookups[v]) for v in space.lookups}

    def pick(vocab):
        return values[vocab][int(rng.integers(len(values[vocab])))]

    out = []
    for _ in range(n):
        now = 1_700_000_000 + int(rng.integers(0, 10**6))
        out.append({
            "user": {f: pick(vocab_of[f]) for f in fields["user"]},
            "context": {f: pick(vocab_of[f]) for f in fields["context"]},
            "timestamp": now,
            "history": [{**{v: pick(v) for v in fields["history"] if v != "ts"}, "ts": now - 60 * (k + 1)}
                        for k in range(n_hist)],
            "candidates": [{f: pick(vocab_of[f]) for f in fields["candidates"]} for _ in range(n_cand)],
        })
    return out


def summarise(latencies: list[float], wall: float, errors: int) -> dict:
    ms = np.asarray(latencies) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "rps": len(latencies) / wall, "errors": errors, "n": len(latencies)}


def time_sequential(fn, requests: list[dict], n: int, warmup: int = 20) -> dict:
    for r in requests[:warmup]:
        fn(r)
    latencies = []
    start = time.perf_counter()
    for k in range(n):
        t = time.perf_counter()
        fn(requests[k % len(requests)])
        latencies.append(time.perf_counter() - t)
    return summarise(latencies, time.perf_counter() - start, 0)


def eager_torch(model_dir: Path, space):
    import torch

    from features.online import encode_request
    from pipelines.artifacts import load_model_dir

    torch.set_num_threads(1)
    model, _, _ = load_model_dir(model_dir)

    def score(request: dict):
        batch = {k: torch.from_numpy(v) for k, v in encode_request(space, request).items()}
        with torch.no_grad():
            return model.probabilities(model(batch))[0].numpy()
    return score


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(folder: Path, threads: int, log: Path, workers: int = 1, with_pid: bool = False,
                   extra: tuple[str, ...] = ()):
    import httpx

    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pipelines", "serve", "--model", str(folder), "--port", str(port),
           "--threads", str(threads), "--workers", str(workers), "--log-level", "warning", *extra]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield url if not with_pid else (url, proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def attack_bodies(request: dict) -> dict[str, bytes]:
    """The abusive bodies of issue 16: valid JSON under the 4 MiB limit, far beyond any valid request."""
    import json

    return {"415k tiny candidates (4 MiB)": json.dumps({**request, "candidates": [{"i": 1}] * 415_000}).encode(),
            "466k-event history": json.dumps({**request, "history": [{"ts": 1}] * 466_000}).encode()[:4_000_000]
            + b"]}"}


ATTACKER = """
import sys, time, httpx
url, paths = sys.argv[1], sys.argv[2:]
bodies = [open(p, "rb").read() for p in paths]
with httpx.Client(base_url=url, timeout=60) as c:
    k = 0
    while True:
        t = time.perf_counter()
        try:
            status = c.post("/v1/score", content=bodies[k % len(bodies)],
                            headers={"content-type": "application/json"}).status_code
        except httpx.HTTPError:
            status = 0
        print(f"{time.perf_counter() - t:.6f} {status}", flush=True)
        k += 1
"""


@contextlib.contextmanager
def attacker(url: str, bodies: dict[str, bytes], work: Path):
    """A separate process sending the abusive bodies back to back (its client work stays out of this process's
    GIL); yields a function returning (seconds, status) of every abusive request so far."""
    paths = []
    for k, body in enumerate(bodies.values()):
        paths.append(work / f"attack-{k}.json")
        paths[-1].write_bytes(body)
    log = work / "attacker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", ATTACKER, url, *map(str, paths)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield lambda: [(float(t), int(s)) for t, s in (line.split() for line in log.read_text().splitlines()
                                                       if line.count(" ") == 1)]
    finally:
        proc.kill()
        proc.wait()


def slowloris_case(serving: Path, work: Path, connections: int, header_timeout: float = 2.0) -> None:
    """``connections`` sockets that send half a request head and stop: how long the server holds them, and
    /healthz latency meanwhile (the server runs with ``--header-timeout``)."""
    import httpx

    with running_server(serving, 1, work / "server-slowloris.log",
                        extra=("--header-timeout", str(header_timeout))) as url:
        host, port = url.removeprefix("http://").split(":")
        socks = []
        for _ in range(connections):
            try:
                s = socket.create_connection((host, int(port)), timeout=5)
                s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Ty")
                socks.append(s)
            except OSError:
                break
        start = time.perf_counter()
        health = []
        while time.perf_counter() - start < header_timeout + 3:
            t = time.perf_counter()
            ok = httpx.get(f"{url}/healthz", timeout=10).status_code == 200
            health.append((time.perf_counter() - t, ok))
            time.sleep(0.05)
        closed = 0
        for s in socks:
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""
            except (TimeoutError, OSError):
                pass
            s.close()
        ms = np.array([h[0] for h in health]) * 1e3
        print(f"\nslowloris: {len(socks)} half-open connections; {closed} closed by the server within "
              f"{header_timeout + 3:g} s (--header-timeout {header_timeout:g}); /healthz meanwhile p50 "
              f"{np.median(ms):.1f} ms, max {ms.max():.1f} ms, {sum(not h[1] for h in health)} failures")


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def attack_case(serving: Path, work: Path, bodies: list[bytes], request: dict, n: int, clients: int,
                rate: float) -> dict[str, dict]:
    """Valid open-loop traffic without, then with, an attacker process sending the abusive bodies."""
    rows = {}
    with running_server(serving, 1, work / "server-attack.log", with_pid=True) as (url, pid):
        rows[f"valid traffic {rate:g} req/s, no attacker"] = http_load(url, bodies, n, clients, rate=rate)
        rss_before = rss_mb(pid)
        with attacker(url, attack_bodies(request), work) as seen:
            rows[f"valid traffic {rate:g} req/s, 1 attacker"] = http_load(url, bodies, n, clients, rate=rate)
            abusive = seen()
        cost = [t for t, _ in abusive]
        print(f"\nattacker: {len(abusive)} abusive requests, statuses {sorted({s for _, s in abusive})}, answered in "
              f"median {1000 * float(np.median(cost)):.1f} ms (max {1000 * max(cost):.1f} ms); server RSS "
              f"{rss_before:.0f} → {rss_mb(pid):.0f} MB")
    return rows


def http_load(url: str, bodies: list[bytes], n: int, clients: int, warmup: int = 50, rate: float = 0.0) -> dict:
    """``n`` requests from ``clients`` threads, each with its own keep-alive connection.

    ``rate`` = 0: closed loop (each client sends its next request when the last one returns: the load
    saturates the server and latency is mostly queueing). ``rate`` > 0: open loop at that many requests/s
    in all, Poisson arrivals per client; latency counts from the scheduled send time, so a request that
    waited for its client to be free is charged for it (no coordinated omission).
    """
    import httpx

    # this process holds torch (the eager reference): without this its own full GC pauses (~35 ms) would be
    # charged to the server's latency
    settle_heap()
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url) as c:
        for b in bodies[:warmup]:
            c.post("/v1/score", content=b, headers=headers)
    counter, lock = iter(range(n)), threading.Lock()
    latencies: list[float] = []
    errors = [0]

    def client(seed: int) -> None:
        gaps = np.random.default_rng(seed)
        due = time.perf_counter()
        with httpx.Client(base_url=url, timeout=60) as c:
            while True:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                t = time.perf_counter()
                if rate > 0:
                    # the next arrival of this client's Poisson stream (rate / clients per second)
                    due += gaps.exponential(clients / rate)
                    time.sleep(max(0.0, due - t))
                    t = due
                try:
                    ok = c.post("/v1/score", content=bodies[k % len(bodies)], headers=headers).status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt)
                    errors[0] += not ok

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarise(latencies, time.perf_counter() - start, errors[0])


def print_table(title: str, rows: dict[str, dict], reference: str) -> None:
    ref = rows[reference]
    print(f"\n{title}")
    print(f"{'case':<44} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>7} {'p50 vs torch':>13} "
          f"{'req/s vs torch':>15}")
    for name, r in rows.items():
        print(f"{name:<44} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>8.1f} {r['errors']:>7d} "
              f"{ref['p50'] / r['p50']:>12.2f}x {r['rps'] / ref['rps']:>14.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="HTTP requests per service case")
    parser.add_argument("--clients", type=int, default=8, help="concurrent loopback clients")
    parser.add_argument("--candidates", type=int, default=100, help="candidates per request (C)")
    parser.add_argument("--history", type=int, default=200, help="history entries per request (= the data's L)")
    parser.add_argument("--arch", default="auto", help="auto (lightsuan if 'sparse' is registered, else suan)")
    parser.add_argument("--grade", type=int, default=1, help="model grade (seq_len is overridden to --history)")
    parser.add_argument("--threads", default="1,2", help="ONNX Runtime intra-op threads to compare")
    parser.add_argument("--rate", type=float, default=150.0,
                        help="also an open-loop case at this total rate (req/s, Poisson); 0 = off")
    parser.add_argument("--workers", type=int, default=2,
                        help="also measure this many server processes (1 ORT thread each) under load; 1 = skip")
    parser.add_argument("--in-process", type=int, default=300,
                        help="sequential requests for the in-process and the 1-client cases")
    parser.add_argument("--workdir", type=Path, default=None, help="keep data/model/export here (default: temp)")
    parser.add_argument("--attack", type=float, default=0.0, metavar="RATE",
                        help="also p50/p99 of open-loop valid traffic at RATE req/s with and without another process "
                             "sending abusive bodies back to back (0 = skip)")
    parser.add_argument("--slowloris", type=int, default=0, metavar="N",
                        help="also open N connections that never finish their headers (0 = skip)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        model_dir, serving, label = build_serving_folder(work, args.arch, args.grade, args.history)
        print(f"model: {label}; built and exported in {time.perf_counter() - t0:.0f}s")

        from features.online import FeatureSpace
        from serving.model_store import load_folder
        from serving.schemas import ScoreRequest

        space = FeatureSpace.load(serving)
        requests = make_requests(space, 64, args.candidates, args.history)
        bodies = [ScoreRequest.model_validate(r).model_dump_json().encode() for r in requests]
        rows = {"eager PyTorch, in-process (1 thread)": time_sequential(eager_torch(model_dir, space), requests,
                                                                         args.in_process)}
        ort_model = load_folder(serving, threads=1)
        rows["ONNX Runtime, in-process (1 thread)"] = time_sequential(ort_model.predict, requests, args.in_process)
        for threads in (int(t) for t in args.threads.split(",")):
            with running_server(serving, threads, work / f"server-{threads}.log") as url:
                rows[f"HTTP service, ORT {threads} thread(s), 1 client"] = http_load(
                    url, bodies, args.in_process, 1)
                rows[f"HTTP service, ORT {threads} thread(s), {args.clients} clients"] = http_load(
                    url, bodies, args.requests, args.clients)
                if args.rate > 0:
                    rows[f"HTTP, ORT {threads} thread(s), {args.clients} clients, {args.rate:g} req/s open"] = (
                        http_load(url, bodies, args.requests, args.clients, rate=args.rate))
        if args.workers > 1:
            with running_server(serving, 1, work / "server-workers.log", workers=args.workers) as url:
                rows[f"HTTP service, {args.workers} workers x 1 thread, {args.clients} clients"] = http_load(
                    url, bodies, args.requests, args.clients)
        if args.slowloris > 0:
            slowloris_case(serving, work, args.slowloris)
        if args.attack > 0:
            rows.update(attack_case(serving, work, bodies, requests[0], args.requests, args.clients, args.attack))
    print_table(f"1 user x {args.candidates} candidates, {args.history}-behaviour history; "
                f"{os.cpu_count()} CPU cores shared by clients and server", rows,
                "eager PyTorch, in-process (1 thread)")
    errors = sum(r["errors"] for r in rows.values())
    print(f"\nzero-errors check: {'PASS' if errors == 0 else f'FAIL ({errors} failed requests)'}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
