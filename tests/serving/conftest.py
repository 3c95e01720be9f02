"""Serving fixtures: two exported model versions (made once per session) and real uvicorn servers.

Version A is a grade-0 SUAN trained for one epoch on the tiny synthetic data and exported; version
B is A with seeded noise on its parameters, so the two give different scores and ``sha256:`` versions.
Servers run ``python -m pipelines serve`` in a subprocess on a free loopback port and are always
stopped (their whole process group) at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServingModels:
    """Paths of the session's models: the trained model folder and two serving folders."""

    model_dir: Path
    a: Path
    b: Path


def _perturbed_copy(src: Path, dst: Path, seed: int = 1) -> Path:
    """A copy of serving folder ``src`` whose model parameters (``model.*`` initializers) carry noise.

    Editing the ONNX initializers gives a second valid version in a second instead of a second export.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from features.model_folder import write_manifest

    shutil.copytree(src, dst)
    graph = onnx.load(str(src / "model.onnx"))
    rng = np.random.default_rng(seed)
    for init in graph.graph.initializer:
        if init.name.startswith("model.") and "running_" not in init.name and init.data_type == onnx.TensorProto.FLOAT:
            value = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array((value + 0.05 * rng.standard_normal(value.shape)).astype(np.float32),
                                                  init.name))
    onnx.save(graph, str(dst / "model.onnx"))
    write_manifest(dst)  # a new version, as an export would record it
    return dst


@pytest.fixture(scope="session")
def serving_models(tiny_synthetic, tmp_path_factory) -> ServingModels:
    from pipelines.args import TrainArgs
    from pipelines.onnx_export import export_model_dir
    from pipelines.train import run_train

    root = tmp_path_factory.mktemp("serving")
    run_train(TrainArgs(data=str(tiny_synthetic / "data"), out=str(root / "run"), grade=0, max_epochs=1,
                        batch_size=256, lr=3e-3, progress=False, mlflow_uri=f"sqlite:///{root / 'mlflow.db'}"))
    export_model_dir(root / "run" / "model", root / "serving_a")
    return ServingModels(root / "run" / "model", root / "serving_a", _perturbed_copy(root / "serving_a", root / "serving_b"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    """A running ``suan serve`` process."""

    url: str
    proc: subprocess.Popen
    log: Path


@contextlib.contextmanager
def serve_process(model: Path | str, log: Path, *extra: str, env: dict | None = None,
                  timeout: float = 60.0, python: str = sys.executable, cwd: Path = REPO) -> Iterator[Server]:
    """Start ``python -m pipelines serve --model MODEL`` on a free port; yield once ``/readyz`` is 200.

    ``python`` may be another environment's interpreter, run outside the checkout (the serving-install test)."""
    port = free_port()
    cmd = [python, "-m", "pipelines", "serve", "--model", str(model), "--port", str(port),
           "--log-level", "warning", *extra]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Server(url, proc, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def thread_server(app) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn server in a thread of this process; yield its URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("in-process server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def start_server():
    """``start_server(model, log, *flags)``: the :func:`serve_process` context manager."""
    return serve_process


@pytest.fixture(scope="session")
def start_thread_server():
    """``start_thread_server(app)``: the :func:`thread_server` context manager."""
    return thread_server


@pytest.fixture(scope="session")
def server(serving_models, tmp_path_factory) -> Iterator[Server]:
    """A server on version A with the default limits, shared by the modules that do not reload."""
    with serve_process(serving_models.a, tmp_path_factory.mktemp("log") / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def space(serving_models):
    from features.online import FeatureSpace

    return FeatureSpace.load(serving_models.a)


@pytest.fixture(scope="session")
def make_request(space):
    """``make_request(seed, n_hist=5, n_cand=10)``: a valid request from the model's real vocabularies."""
    import numpy as np

    from serving.service import allowed_fields

    fields = allowed_fields(space)
    vocab_of = {f.name: f.vocab for f in space.fmap.fields if f.vocab}

    def pick(rng, vocab):
        values = list(space.lookups[vocab])
        value = values[int(rng.integers(len(values)))]
        return int(value) if value.isdigit() and rng.random() < 0.5 else value  # raw ids as int or str

    def build(seed: int, n_hist: int = 5, n_cand: int = 10) -> dict:
        rng = np.random.default_rng(seed)
        now = 1_700_000_000 + int(rng.integers(0, 10**6))
        return {
            "user": {f: pick(rng, vocab_of[f]) for f in fields["user"]},
            "context": {f: pick(rng, vocab_of[f]) for f in fields["context"]},
            "timestamp": now,
            "history": [{**{v: pick(rng, v) for v in fields["history"] if v != "ts"},
                         "ts": now - int(rng.integers(1, 10**6))} for _ in range(n_hist)],
            "candidates": [{f: pick(rng, vocab_of[f]) for f in fields["candidates"]} for _ in range(n_cand)],
        }

    return build
