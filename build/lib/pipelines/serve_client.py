"""Start the real scoring service in its own process, score one request over HTTP, stop it.

Used by the demo (and handy in notebooks); the service binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_request(synthetic_dir: str | Path, n_history: int, n_candidates: int) -> dict:
    """A request in raw ids from a generated synthetic folder: the busiest user's recent behaviours."""
    root = Path(synthetic_dir)
    events = pl.read_parquet(root / "events")
    user_id = events.group_by("user_id").len().sort(["len", "user_id"], descending=[True, False])["user_id"][0]
    mine = events.filter(pl.col("user_id") == user_id).sort("timestamp")
    recent = mine.tail(n_history)
    profile = pl.read_parquet(root / "users.parquet").filter(pl.col("user_id") == user_id).row(0, named=True)
    items = pl.read_parquet(root / "items.parquet").sort("popularity", descending=True).head(n_candidates)
    return {
        "user": {k: int(v) for k, v in profile.items()},
        "context": {"device": int(recent["device"][-1])},
        "timestamp": int(recent["timestamp"][-1]) + 600,
        "history": [{"item_id": int(r["item_id"]), "cate_id": int(r["cate_id"]),
                     "action": "click" if r["label"] else "view", "ts": int(r["timestamp"])}
                    for r in recent.iter_rows(named=True)],
        "candidates": [{"item_id": int(r["item_id"]), "cate_id": int(r["cate_id"])} for r in items.iter_rows(named=True)],
    }


def serve_and_score(model: str, request: dict, mlflow_uri: str = "", timeout_s: float = 120.0) -> dict:
    """Run ``suan serve --model MODEL`` on a free loopback port, POST ``request``, stop the server."""
    port = free_port()
    cmd = [sys.executable, "-m", "pipelines", "serve", "--model", model, "--port", str(port)]
    if mlflow_uri:
        cmd += ["--mlflow-uri", mlflow_uri]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise TimeoutError(f"the service was not ready within {timeout_s:.0f} s")
        response = httpx.post(f"{base}/v1/score", json=request, timeout=30)
        response.raise_for_status()
        return response.json()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
