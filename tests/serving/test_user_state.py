"""The stateful path over real HTTP: an incremental model's cached user states score like /v1/score,
stay within ``--max-users`` (LRU eviction, counted in /metrics), and bad input is always a 4xx."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from features.model_folder import write_manifest
from features.online import FeatureSpace
from features.schema import FeatureMap
from serving.graph import APPEND_GRAPH, STATE_INIT, STATE_SCORE_GRAPH
from serving.service import allowed_fields

# both paths are onnxruntime graphs each within the export parity gate (1e-5) of PyTorch
STATE_VS_FULL_ATOL = 2e-5
MAX_USERS = 3


@pytest.fixture(scope="module")
def incremental_folder(tiny_synthetic, tmp_path_factory) -> Path:
    """A 2-layer incremental SUAN over Gated DeltaNet (perturbed, untrained), exported with its graphs."""
    from pipelines.artifacts import save_model_dir
    from pipelines.onnx_export import export_model_dir
    from suan.config import ModelConfig
    from suan.models.ctr import build_model

    root = tmp_path_factory.mktemp("stateful")
    data = tiny_synthetic / "data"
    cfg = ModelConfig.from_grade("suan", 0, num_layers=2, mixer="gated_deltanet", backend="torch", incremental=True)
    torch.manual_seed(0)
    model = build_model(cfg, FeatureMap.load(data / "feature_map.json"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    save_model_dir(root / "model", model, cfg, data)
    result = export_model_dir(root / "model", root / "serving")
    assert len(result["incremental_parity"]) == 3
    return root / "serving"


@pytest.fixture(scope="module")
def stateful_server(incremental_folder, start_server, tmp_path_factory):
    log = tmp_path_factory.mktemp("stateful_logs") / "server.log"
    with start_server(incremental_folder, log, "--max-users", str(MAX_USERS)) as srv:
        yield srv


@pytest.fixture(scope="module")
def stateful(stateful_server):
    with httpx.Client(base_url=stateful_server.url, timeout=30) as client:
        yield client


def _user(space: FeatureSpace, seed: int, n_hist: int, n_cand: int = 7) -> dict:
    """A /v1/score request with real raw ids, history sorted by time (some equal times)."""
    rng = np.random.default_rng(seed)
    fields, vocab_of = allowed_fields(space), {f.name: f.vocab for f in space.fmap.fields if f.vocab}

    def pick(vocab):
        return list(space.lookups[vocab])[int(rng.integers(len(space.lookups[vocab])))]

    now = 1_700_000_000 + int(rng.integers(0, 10**6))
    stamps = np.sort(now - rng.integers(1, 10**6, size=n_hist))
    stamps[1::4] = stamps[::4][:len(stamps[1::4])]  # ties keep request order on both paths
    return {"user": {f: pick(vocab_of[f]) for f in fields["user"]},
            "context": {f: pick(vocab_of[f]) for f in fields["context"]}, "timestamp": now,
            "history": [{**{v: pick(v) for v in fields["history"] if v != "ts"}, "ts": int(t)} for t in stamps],
            "candidates": [{f: pick(vocab_of[f]) for f in fields["candidates"]} for _ in range(n_cand)]}


def _append(client: httpx.Client, user_id: str, request: dict, chunks: int = 2) -> None:
    """Append the history in ``chunks`` requests, each newest first (the service orders by time; equal
    times keep their request order, as in /v1/score)."""
    history, appended = request["history"], 0
    for part in np.array_split(np.arange(len(history)), chunks):
        events = sorted((history[k] for k in part), key=lambda e: -e["ts"])
        if events:
            r = client.post(f"/v1/users/{user_id}/events", json={"user": request["user"], "events": events})
            assert r.status_code == 200, r.text
            assert r.json()["created"] == (appended == 0) and r.json()["behaviours"] == appended + len(events)
            appended += len(events)


def _state_score(client: httpx.Client, user_id: str, request: dict) -> httpx.Response:
    body = {k: request[k] for k in ("context", "timestamp", "candidates")}
    return client.post(f"/v1/users/{user_id}/score", json=body)


@pytest.mark.integration
@pytest.mark.parametrize("n_hist", [1, 5, 16])
def test_state_scores_equal_full_recompute(stateful, incremental_folder, n_hist):
    space = FeatureSpace.load(incremental_folder)
    assert n_hist <= space.max_len  # /v1/score keeps the most recent max_len behaviours, the state all
    request = _user(space, seed=n_hist, n_hist=n_hist)
    _append(stateful, f"eq{n_hist}", request)
    got = _state_score(stateful, f"eq{n_hist}", request)
    assert got.status_code == 200, got.text
    assert got.json()["behaviours"] == n_hist
    want = stateful.post("/v1/score", json=request).json()["scores"]
    np.testing.assert_allclose(got.json()["scores"], want, atol=STATE_VS_FULL_ATOL, rtol=0)


@pytest.mark.integration
def test_least_recently_used_states_are_evicted_and_counted(stateful, incremental_folder):
    space = FeatureSpace.load(incremental_folder)
    requests = {f"lru{k}": _user(space, seed=100 + k, n_hist=2) for k in range(MAX_USERS + 1)}
    names = list(requests)
    for name in names[:MAX_USERS]:
        _append(stateful, name, requests[name], chunks=1)
    assert _state_score(stateful, names[0], requests[names[0]]).status_code == 200  # now the most recent
    before = _metric(stateful, "suan_user_state_evictions_total")
    _append(stateful, names[MAX_USERS], requests[names[MAX_USERS]], chunks=1)
    assert _metric(stateful, "suan_user_state_evictions_total") == before + 1
    assert _metric(stateful, "suan_user_states") == MAX_USERS
    missing = _state_score(stateful, names[1], requests[names[1]])
    assert missing.status_code == 404 and "evicted" in missing.json()["detail"]
    for name in (names[0], *names[2:]):
        assert _state_score(stateful, name, requests[name]).status_code == 200


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.integration
def test_bad_stateful_input_is_a_4xx_with_a_reason(stateful, incremental_folder):
    space = FeatureSpace.load(incremental_folder)
    request = _user(space, seed=7, n_hist=3)
    _append(stateful, "bad", request, chunks=1)
    event = request["history"][-1]
    cases = {
        "unknown user": (f"/v1/users/{'nobody'}/score", {k: request[k] for k in ("timestamp", "candidates")}, 404),
        "unknown event field": ("/v1/users/bad/events", {"events": [{**event, "colour": 1}]}, 400),
        "no events": ("/v1/users/bad/events", {"user": request["user"], "events": []}, 400),
        "older event": ("/v1/users/bad/events", {"user": request["user"], "events": [{**event, "ts": 5}]}, 400),
        "changed profile": ("/v1/users/bad/events", {"user": {}, "events": [event]}, 409),
        "float ts": ("/v1/users/bad/events", {"user": request["user"], "events": [{**event, "ts": 1.5}]}, 422),
        "no candidates": ("/v1/users/bad/score", {"timestamp": 1, "candidates": []}, 400),
        "unknown candidate field": ("/v1/users/bad/score", {"timestamp": 1, "candidates": [{"x": 1}]}, 400),
        "profile in score": ("/v1/users/bad/score", {"user": {}, "timestamp": 1, "candidates": [{}]}, 422),
    }
    for what, (path, body, status) in cases.items():
        r = stateful.post(path, json=body)
        assert r.status_code == status, (what, r.status_code, r.text)
        assert r.json()["detail"], what
    assert _state_score(stateful, "bad", request).json()["behaviours"] == 3  # no bad request changed it
    assert stateful.delete("/v1/users/bad").json() == {"user_id": "bad", "deleted": True}
    assert _state_score(stateful, "bad", request).status_code == 404


@pytest.mark.integration
def test_a_model_without_an_incremental_form_answers_400(incremental_folder, start_server, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(incremental_folder, plain)
    for name in (APPEND_GRAPH, STATE_SCORE_GRAPH, STATE_INIT):
        (plain / name).unlink()
    write_manifest(plain)  # as an export of a plain model records it
    space = FeatureSpace.load(plain)
    request = _user(space, seed=3, n_hist=2)
    with start_server(plain, tmp_path / "plain.log") as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        r = client.post("/v1/users/u1/events", json={"user": request["user"], "events": request["history"]})
        assert r.status_code == 400 and "no incremental form" in r.json()["detail"]
        assert _state_score(client, "u1", request).status_code == 400
        assert client.post("/v1/score", json=request).status_code == 200


@pytest.mark.integration
def test_stateful_server_never_loads_torch(stateful_server, stateful, incremental_folder):
    request = _user(FeatureSpace.load(incremental_folder), seed=11, n_hist=2)
    _append(stateful, "torchless", request, chunks=1)
    assert _state_score(stateful, "torchless", request).status_code == 200
    maps = Path(f"/proc/{stateful_server.proc.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this platform")
    libraries = maps.read_text()
    assert "onnxruntime" in libraries
    assert "libtorch" not in libraries and "/torch/" not in libraries


@pytest.mark.integration
def test_registered_incremental_model_keeps_its_stateful_graphs(incremental_folder, tmp_path_factory):
    from serving.model_store import ModelStore
    from serving.registry import register

    root = tmp_path_factory.mktemp("stateful_registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    assert register(incremental_folder, "tiny-incremental", uri) == "models:/tiny-incremental/1"
    model, _ = ModelStore("models:/tiny-incremental/1", tracking_uri=uri).load()
    assert model.incremental is not None  # the warm-up also ran an append and a score through them
