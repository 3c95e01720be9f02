"""The scoring service over real HTTP: scores equal eager PyTorch, no torch in the server, ops endpoints."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from features.online import encode_request
from pipelines.artifacts import load_model_dir

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-5


def _torch_scores(model, space, request: dict) -> np.ndarray:
    batch = {k: torch.from_numpy(v) for k, v in encode_request(space, request).items()}
    with torch.no_grad():
        return model.probabilities(model(batch))[0].numpy()  # [C]


def _parity_requests(make_request, space) -> list[dict]:
    long = make_request(3, n_hist=space.max_len + 25, n_cand=7)
    long["history"] = long["history"][::-1]  # any order: the service sorts by time and keeps the last L
    unknown = make_request(4, n_hist=4, n_cand=3)
    unknown["user"] = {}  # missing fields → OOV
    unknown["candidates"][0] = {"item_id": "never-seen-item"}
    unknown["history"][1]["item_id"] = 987654321
    return [make_request(0), make_request(1, n_hist=0, n_cand=1), make_request(2, n_hist=1, n_cand=200),
            long, unknown]


def test_http_scores_equal_eager_pytorch(client, serving_models, make_request, space):
    model, _, _ = load_model_dir(serving_models.model_dir)
    digest = hashlib.sha256((serving_models.a / "model.onnx").read_bytes()).hexdigest()[:12]
    for k, request in enumerate(_parity_requests(make_request, space)):
        r = client.post("/v1/score", json=request)
        assert r.status_code == 200, r.text
        body = r.json()
        want = _torch_scores(model, space, request)
        assert len(body["scores"]) == len(request["candidates"])
        np.testing.assert_allclose(body["scores"], want, rtol=0, atol=ATOL, err_msg=f"request {k}")
        assert body["model_version"] == f"sha256:{digest}"


def test_raw_ids_as_int_or_string_are_the_same_id(client, make_request):
    request = make_request(5)
    as_str = {**request, "candidates": [{k: str(v) for k, v in c.items()} for c in request["candidates"]],
              "user": {k: str(v) for k, v in request["user"].items()}}
    one, two = client.post("/v1/score", json=request).json(), client.post("/v1/score", json=as_str).json()
    assert one["scores"] == two["scores"]


def test_history_beyond_l_keeps_the_most_recent(client, make_request, space):
    request = make_request(6, n_hist=space.max_len, n_cand=5)
    older = [{**h, "ts": h["ts"] - 10**7} for h in make_request(7, n_hist=30)["history"]]
    padded = {**request, "history": older + request["history"]}
    assert client.post("/v1/score", json=padded).json() == client.post("/v1/score", json=request).json()


def test_server_process_never_loads_torch(server, client, make_request):
    assert client.post("/v1/score", json=make_request(8)).status_code == 200
    maps = Path(f"/proc/{server.proc.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this platform (the import check below still runs)")
    libraries = maps.read_text()
    assert "onnxruntime" in libraries  # the check sees the libraries the server did load
    assert "libtorch" not in libraries and "/torch/" not in libraries


def test_serving_modules_import_neither_torch_nor_lightning(serving_models):
    code = (
        "import sys\n"
        "import pipelines.serve, serving.server, serving.registry\n"
        "from serving.model_store import load_folder\n"
        "from serving.server import ServiceConfig, create_app\n"
        f"create_app(ServiceConfig(model={str(serving_models.a)!r}))\n"
        f"m = load_folder({str(serving_models.a)!r})\n"
        "m.predict({'timestamp': 10**9, 'history': [{'ts': 1}], 'candidates': [{}]})\n"
        "bad = [name for name in ('torch', 'lightning') if name in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_health_ready_docs(client, serving_models, space):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"].startswith("sha256:")
    assert ready["providers"][-1] == "CPUExecutionProvider" and ready["max_history_kept"] == space.max_len
    assert ready["fields"]["candidates"] == ["item_id", "cate_id"]
    assert "hour" not in ready["fields"]["context"]  # derived from the timestamp
    schema = client.get("/openapi.json").json()
    assert {"/v1/score", "/healthz", "/readyz", "/metrics", "/admin/reload"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


def _sample(text: str, name: str, **labels: str) -> float:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name + (f"{{{inner}}}" if inner else "")) + r" (\S+)$"
    match = re.search(pattern, text, flags=re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_requests_errors_latency_and_version(client, make_request):
    before = client.get("/metrics").text
    for k in range(3):
        assert client.post("/v1/score", json=make_request(10 + k, n_cand=4)).status_code == 200
    assert client.post("/v1/score", json={**make_request(13), "candidates": []}).status_code == 400
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = after.text

    def delta(name, **labels):
        return _sample(text, name, **labels) - _sample(before, name, **labels)

    assert delta("suan_requests_total", path="/v1/score", status="200") == 3
    assert delta("suan_requests_total", path="/v1/score", status="400") == 1
    assert delta("suan_errors_total", kind="empty_candidates") == 1
    assert delta("suan_request_duration_seconds_count", path="/v1/score") == 4
    assert delta("suan_request_duration_seconds_bucket", path="/v1/score", le="+Inf") == 4
    assert delta("suan_candidates_scored_total") == 12
    version = client.get("/readyz").json()["model_version"]
    assert _sample(text, "suan_model_info", version=version) == 1
    assert "# TYPE suan_request_duration_seconds histogram" in text


def test_suan_serve_fails_fast_on_a_folder_that_is_not_exported(serving_models, capsys):
    from pipelines.cli import main

    assert main(["serve", "--model", str(serving_models.model_dir)]) == 2
    err = capsys.readouterr().err
    assert "is incomplete: missing ['model.onnx']" in err and "suan export --run RUN --out DIR" in err


def test_scoring_slots_default_to_cores_per_ort_thread_and_reject_negatives(monkeypatch):
    from serving.server import ServiceConfig
    from suan.utils.config import ConfigError

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert ServiceConfig(model="m").scoring_slots == 8
    assert ServiceConfig(model="m", threads=3).scoring_slots == 2
    assert ServiceConfig(model="m", threads=16).scoring_slots == 1
    assert ServiceConfig(model="m", concurrency=5).scoring_slots == 5
    with pytest.raises(ConfigError, match="concurrency"):
        ServiceConfig(model="m", concurrency=-1)
