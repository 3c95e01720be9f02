"""Hot reload over real HTTP: no request lost during a swap, failed loads keep the old version,
the folder watcher picks up a replaced export, readiness before the first load, the admin token."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time

import httpx
import numpy as np
import pytest

from serving.model_store import ModelStore
from serving.server import ServiceConfig, create_app


def _version(folder) -> str:
    return "sha256:" + hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()[:12]


TOKEN = "t0ken"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def reload_server(serving_models, tmp_path_factory, start_server):
    """Its own server (versions change here), on a copy of A that the watcher test may replace; model control
    on with a token, reloads allowed from its own folder and from the exports' folder."""
    root = tmp_path_factory.mktemp("reload")
    shutil.copytree(serving_models.a, root / "current")
    with start_server(root / "current", root / "server.log", "--watch-seconds", "0.2", "--model-roots",
                      f"{root},{serving_models.a.parent}", env={"SUAN_SERVE_ADMIN_TOKEN": TOKEN, "MLFLOW_TRACKING_URI": ""}) as srv:
        yield srv, root / "current"


def _stream(url: str, request: dict, stop: threading.Event, out: list) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            r = c.post("/v1/score", json=request)
            out.append((r.status_code, r.json().get("model_version"), r.json().get("scores")))


def test_reload_during_a_request_stream_loses_none(reload_server, serving_models, make_request):
    srv, _ = reload_server
    request = make_request(0, n_hist=8, n_cand=50)
    before = httpx.get(f"{srv.url}/readyz").json()["model_version"]
    target = serving_models.b if before != _version(serving_models.b) else serving_models.a
    stop, results = threading.Event(), [[] for _ in range(3)]
    threads = [threading.Thread(target=_stream, args=(srv.url, request, stop, out)) for out in results]
    for t in threads:
        t.start()
    while min(len(out) for out in results) < 15:
        time.sleep(0.01)
    r = httpx.post(f"{srv.url}/admin/reload", json={"model": str(target)}, headers=ADMIN, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["previous_version"] == before and r.json()["model_version"] == _version(target)
    seen = [len(out) for out in results]
    while min(len(out) - n for out, n in zip(results, seen, strict=True)) < 15:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    for out in results:
        assert all(status == 200 for status, _, _ in out)
        versions = [v for _, v, _ in out]
        first_new = versions.index(_version(target))
        assert set(versions[:first_new]) == {before} and set(versions[first_new:]) == {_version(target)}
        scores = {v: s for _, v, s in out}
        assert scores[before] != scores[_version(target)]  # really another model
    assert httpx.get(f"{srv.url}/readyz").json()["model_version"] == _version(target)


def test_failed_reload_keeps_serving_the_old_version(reload_server, make_request):
    srv, current = reload_server
    before = httpx.get(f"{srv.url}/readyz").json()["model_version"]
    broken = current.parent / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not a model")
    for folder, reason in ((current.parent / "missing", "does not exist"), (broken, "is incomplete")):
        r = httpx.post(f"{srv.url}/admin/reload", json={"model": str(folder)}, headers=ADMIN)
        assert r.status_code == 400 and "still serving the previous version" in r.json()["detail"], r.text
        assert str(current.parent) not in r.text  # an answer never says which paths exist
        assert reason in srv.log.read_text()  # the operator's log does, with the audit line
    r = httpx.post(f"{srv.url}/v1/score", json=make_request(1))
    assert r.status_code == 200 and r.json()["model_version"] == before
    assert 'suan_model_reloads_total{result="failed"} 2' in httpx.get(f"{srv.url}/metrics").text


def test_reload_loads_only_under_the_model_roots(reload_server, tmp_path):
    srv, current = reload_server
    outside = tmp_path / "elsewhere"
    shutil.copytree(current, outside)
    (current.parent / "link").symlink_to(outside)  # a link inside a root that points out of it
    for model in (str(outside), str(current.parent / "link"), str(current / ".." / ".." / outside.parent.name)):
        r = httpx.post(f"{srv.url}/admin/reload", json={"model": model}, headers=ADMIN)
        assert r.status_code == 403 and "model roots" in r.json()["detail"], r.text
        assert str(tmp_path) not in r.text
    # no registry was configured: a models:/ URI is refused before any MLflow store is opened
    r = httpx.post(f"{srv.url}/admin/reload", json={"model": "models:/x/1"}, headers=ADMIN)
    assert r.status_code == 400 and "no model registry is configured" in r.json()["detail"]
    assert srv.log.read_text().count("suan.serving.audit") >= 4


def test_model_control_is_off_without_a_token(serving_models, tmp_path, start_thread_server):
    app = create_app(ServiceConfig(model=str(serving_models.a)), admin_token="")
    with start_thread_server(app) as url:
        r = httpx.post(f"{url}/admin/reload", json={}, timeout=30)
        assert r.status_code == 403 and "model control is disabled" in r.json()["detail"]


def test_watcher_reloads_a_replaced_export(reload_server, serving_models):
    srv, current = reload_server
    r = httpx.post(f"{srv.url}/admin/reload", json={"model": str(current)}, headers=ADMIN, timeout=60)  # watch it again
    assert r.status_code == 200, r.text
    other = serving_models.b if r.json()["model_version"] == _version(serving_models.a) else serving_models.a
    staged = current.parent / ".current.tmp"
    shutil.copytree(other, staged)
    shutil.rmtree(current)
    os.replace(staged, current)  # as `suan export --out current` does: build beside, then rename
    deadline = time.monotonic() + 20
    while httpx.get(f"{srv.url}/readyz").json()["model_version"] != _version(other):
        assert time.monotonic() < deadline, "the watcher did not reload the replaced folder"
        time.sleep(0.1)


def test_not_ready_until_a_model_loads_and_reload_needs_the_token(serving_models, make_request, tmp_path,
                                                                  start_thread_server):
    app = create_app(ServiceConfig(model=str(tmp_path / "not-exported-yet"), model_roots=(str(serving_models.a.parent),)),
                     admin_token="s3cret")
    with start_thread_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        deadline = time.monotonic() + 10
        while (ready := c.get("/readyz")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert ready.status_code == 503 and "does not exist" in ready.json()["detail"]
        r = c.post("/v1/score", json=make_request(0))
        assert r.status_code == 503 and "no model loaded yet" in r.json()["detail"]
        body = {"model": str(serving_models.a)}
        assert c.post("/admin/reload", json=body).status_code == 401
        assert c.post("/admin/reload", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = c.post("/admin/reload", json=body, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["previous_version"] == ""
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/score", json=make_request(0)).status_code == 200


def test_a_request_keeps_the_version_it_grabbed(serving_models, make_request):
    store = ModelStore(str(serving_models.a))
    store.load()
    held = store.current  # what a request in flight holds
    new, previous = store.load(str(serving_models.b))
    assert previous is held and store.current is new and held.version == _version(serving_models.a)
    request = make_request(0)
    assert not np.array_equal(held.predict(request), new.predict(request))  # the old session still runs
