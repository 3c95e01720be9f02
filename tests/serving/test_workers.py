"""Several uvicorn workers: one shared listening socket with TCP_NODELAY, the same scores as one worker."""

from __future__ import annotations

import socket

import httpx
import numpy as np

from serving.server import ServiceConfig, create_app, no_delay
from serving.service import Limits


def test_connections_accepted_on_the_shared_socket_inherit_no_delay():
    with no_delay(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                # without it Nagle + the client's delayed ACK add ~40 ms to every keep-alive response
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_two_workers_score_like_one_over_keep_alive(serving_models, start_server, client, make_request, tmp_path):
    requests = [make_request(seed, n_hist=seed, n_cand=3 + seed) for seed in range(4)]
    single = [client.post("/v1/score", json=r).json()["scores"] for r in requests]
    with start_server(serving_models.a, tmp_path / "workers.log", "--workers", "2", timeout=120) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as keep_alive:
            for request, want in zip(requests, single, strict=True):
                got = keep_alive.post("/v1/score", json=request)
                assert got.status_code == 200, got.text
                np.testing.assert_allclose(got.json()["scores"], want, atol=1e-6)


def test_a_worker_accepts_only_after_its_own_model_loaded(serving_models, start_thread_server):
    # workers share one socket: a worker answering before its load would 503 a request that another
    # worker's /readyz had let through (the race this test's neighbour hit once in ~30 suite runs)
    app = create_app(ServiceConfig(model=str(serving_models.a), limits=Limits()), admin_token="",
                     load_before_serving=True)
    with start_thread_server(app) as url:
        assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200


def test_a_worker_whose_model_fails_to_load_still_answers_with_the_reason(tmp_path, start_thread_server):
    app = create_app(ServiceConfig(model=str(tmp_path / "missing"), limits=Limits()), admin_token="",
                     load_before_serving=True)
    with start_thread_server(app) as url:
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert "missing" in ready.text
