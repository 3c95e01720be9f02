"""Limits that bound what a client can cost: head and body deadlines, the scoring queue and deadline, keys."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import anyio
import httpx
import pytest

from serving.admission import Admission, Overloaded, check_shape
from serving.server import ServiceConfig, create_app
from serving.service import BadRequest, Limits


@pytest.fixture(scope="module")
def strict_server(serving_models, tmp_path_factory, start_server):
    """A server with 1 s head and body deadlines."""
    log = tmp_path_factory.mktemp("strict") / "server.log"
    with start_server(serving_models.a, log, "--header-timeout", "1", "--body-timeout", "1") as srv:
        yield srv


def _connect(url: str) -> socket.socket:
    parsed = urlparse(url)
    return socket.create_connection((parsed.hostname, parsed.port), timeout=10)


def _read_until_closed(sock: socket.socket, limit: float = 8.0) -> tuple[bytes, float]:
    start, data = time.monotonic(), b""
    sock.settimeout(limit)
    while chunk := sock.recv(4096):
        data += chunk
    return data, time.monotonic() - start


def test_a_connection_that_never_finishes_its_headers_is_closed(strict_server):
    with _connect(strict_server.url) as s:
        s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: appl")  # and nothing more
        data, waited = _read_until_closed(s)
    assert data == b"" and waited < 5  # closed by the server after its 1 s head deadline
    assert httpx.get(f"{strict_server.url}/healthz").status_code == 200


def test_a_body_that_stops_arriving_gets_408(strict_server):
    with _connect(strict_server.url) as s:
        s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"user\": ")
        data, waited = _read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in data, data
    assert waited < 5


def test_a_full_queue_answers_503_with_retry_after_and_a_slow_request_504():
    async def scenario() -> list:
        admission = Admission(slots=1, queue=1, deadline=5)
        outcomes = []

        async def call(seconds: float) -> None:
            try:
                outcomes.append(await admission.run(lambda: time.sleep(seconds) or "ok"))
            except BadRequest as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(3):  # one works, one waits, one is refused
                tg.start_soon(call, 0.3)
                await anyio.sleep(0.02)
        late = Admission(slots=1, queue=0, deadline=0.1)
        try:
            await late.run(lambda: time.sleep(0.5))
        except BadRequest as exc:
            outcomes.append(exc)
        return outcomes

    outcomes = anyio.run(scenario)
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert outcomes.count("ok") == 2 and len(refused) == 1
    assert refused[0].status == 503 and refused[0].headers == {"Retry-After": "1"}
    assert isinstance(outcomes[-1], BadRequest) and outcomes[-1].status == 504 and "deadline of 0.1 s" in str(outcomes[-1])


def test_the_shape_check_refuses_only_bodies_beyond_the_bounds():
    check_shape(b'{"a": [{"x": 1}, {"y": 2}]}', objects=4, separators=1)
    with pytest.raises(BadRequest, match="3 JSON separators"):
        check_shape(b"[1,2,3,4]", objects=4, separators=2)
    with pytest.raises(BadRequest, match="5 JSON objects and arrays"):
        check_shape(b"[{},{},{},{}]", objects=4, separators=10)


def test_user_state_writes_need_the_key_when_one_is_set(serving_models, make_request, start_thread_server):
    app = create_app(ServiceConfig(model=str(serving_models.a), limits=Limits()), api_key="k3y", admin_token="")
    request = make_request(0)
    events = {"user": request["user"], "events": request["history"]}
    with start_thread_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        while c.get("/readyz").status_code != 200:
            time.sleep(0.05)
        assert c.post("/v1/users/u1/events", json=events).status_code == 401
        assert c.delete("/v1/users/u1").status_code == 401
        assert c.delete("/v1/users/u1", headers={"X-API-Key": "wrong"}).status_code == 401
        with_key = c.post("/v1/users/u1/events", json=events, headers={"X-API-Key": "k3y"})
        assert with_key.status_code == 400 and "no incremental form" in with_key.json()["detail"]  # past the gate
        assert c.delete("/v1/users/u1", headers={"X-API-Key": "k3y"}).json() == {"user_id": "u1", "deleted": False}
        assert c.post("/v1/score", json=request).status_code == 200  # scoring needs no key


def test_openapi_declares_the_bounded_request_bodies(serving_models):
    app = create_app(ServiceConfig(model=str(serving_models.a), limits=Limits(max_candidates=7)), admin_token="")
    schema = app.openapi()
    body = schema["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ScoreRequest"}
    score = schema["components"]["schemas"]["ScoreRequest"]
    assert score["properties"]["candidates"]["maxItems"] == 7 and score["properties"]["history"]["maxItems"] == 1000
    assert "HistoryEvent" in schema["components"]["schemas"]
