"""Every kind of bad input gets its documented 4xx with a reason over real HTTP, never a 5xx."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

import pytest

JSON = {"content-type": "application/json"}
LIMIT_CANDIDATES, LIMIT_HISTORY, LIMIT_BYTES = 1000, 1000, 4 * 1024 * 1024  # the service defaults


def _without(key):
    return lambda r: {"json": {k: v for k, v in r.items() if k != key}}


def _with(**changes):
    return lambda r: {"json": {**r, **changes}}


def _raw(text):
    return lambda r: {"content": text.encode(), "headers": JSON}


def _edit(fn):
    def build(r):
        r = json.loads(json.dumps(r))
        fn(r)
        return {"json": r}
    return build


CASES = [  # (id, request builder, status, fragment of the reason)
    ("missing-timestamp", _without("timestamp"), 422, "Field required"),
    ("missing-candidates", _without("candidates"), 422, "Field required"),
    ("missing-user", _without("user"), 422, "Field required"),
    ("extra-top-level-key", _with(userid={}), 422, "Extra inputs are not permitted"),
    ("timestamp-as-string", _with(timestamp="1700000000"), 422, "valid integer"),
    ("timestamp-as-float", _with(timestamp=1.7e9), 422, "valid integer"),
    ("negative-timestamp", _with(timestamp=-5), 422, "greater than or equal to 0"),
    ("millisecond-timestamp", _with(timestamp=1_700_000_000_000), 422, "less than or equal to 10000000000"),
    ("float-feature-value", _edit(lambda r: r["user"].update(age=2.5)), 422, "valid string"),
    ("bool-feature-value", _edit(lambda r: r["candidates"][0].update(item_id=True)), 422, "valid integer"),
    ("null-feature-value", _edit(lambda r: r["context"].update(device=None)), 422, "valid string"),
    ("nested-feature-value", _edit(lambda r: r["user"].update(age=[1])), 422, "valid string"),
    ("candidates-not-a-list", _with(candidates={"item_id": 1}), 422, "valid list"),
    ("history-entry-without-ts", _edit(lambda r: r["history"][0].pop("ts")), 422, "Field required"),
    ("negative-history-ts", _edit(lambda r: r["history"][0].update(ts=-1)), 422, "greater than or equal to 0"),
    ("errors-are-capped", lambda r: {"json": {**r, "history": [{"item_id": 1}] * 500}}, 422,
     "480 more errors not listed"),
    ("nan-timestamp", _raw('{"user": {}, "timestamp": NaN, "candidates": [{"item_id": 1}]}'), 422, "NaN"),
    ("infinity-value", _raw('{"user": {"age": Infinity}, "timestamp": 1, "candidates": [{}]}'), 422, "Infinity"),
    ("overflowing-float", _raw('{"user": {}, "timestamp": 1e999, "candidates": [{"x": 1}]}'), 422, "overflows"),
    ("truncated-json", _raw('{"user": {}, "timestamp": 1, "candidates": ['), 422, "invalid JSON"),
    ("body-is-a-list", _raw("[1, 2]"), 422, "valid dictionary"),
    ("not-json-content-type", lambda r: {"content": json.dumps(r).encode(), "headers": {"content-type": "text/plain"}},
     422, "Content-Type: application/json"),
    ("unknown-user-field", _edit(lambda r: r["user"].update(userid=3)), 400, "unknown user field(s) ['userid']"),
    ("unknown-context-field", _edit(lambda r: r["context"].update(os="ios")), 400, "allowed: ['device']"),
    ("derived-context-field", _edit(lambda r: r["context"].update(hour=3)), 400, "derived from timestamp"),
    ("unknown-history-field", _edit(lambda r: r["history"][1].update(price=3)), 400, "(first at history[1])"),
    ("unknown-candidate-field", _edit(lambda r: r["candidates"][2].update(itemid=3)), 400,
     "unknown candidate field(s) ['itemid'] (first at candidates[2]); allowed: ['item_id', 'cate_id']"),
    ("empty-candidates", _with(candidates=[]), 400, "candidates is empty"),
    ("history-after-the-impression", _edit(lambda r: r["history"][2].update(ts=r["timestamp"] + 1)), 400,
     "history[2] at ts"),
    ("empty-candidate", _edit(lambda r: r["candidates"].append({})), 400, "candidates[10] has no fields"),
    ("too-many-candidates", lambda r: {"json": {**r, "candidates": [{"item_id": 1}] * (LIMIT_CANDIDATES + 1)}},
     422, f"at most {LIMIT_CANDIDATES} items"),
    ("history-too-long", lambda r: {"json": {**r, "history": [{"ts": 1}] * (LIMIT_HISTORY + 1)}},
     422, f"at most {LIMIT_HISTORY} items"),
    ("overlong-value", _edit(lambda r: r["user"].update(user_id="u" * 257)), 422, "at most 256 characters"),
    ("too-many-fields", _edit(lambda r: r["user"].update({f"f{i}": 1 for i in range(65)})), 422,
     "at most 64 items"),
    ("far-more-items-than-any-request", lambda r: {"content": b'{"candidates": [' + b"{}," * 200_000 + b"{}]}",
                                                   "headers": JSON}, 400, "JSON objects and arrays"),
    ("a-flood-of-separators", lambda r: {"content": b'{"candidates": [' + b"1," * 200_000 + b"1]}", "headers": JSON},
     400, "JSON separators"),
    ("chunked-body-too-large", lambda r: {"content": (b" " * 65536 for _ in range(LIMIT_BYTES // 65536 + 1)),
                                          "headers": JSON}, 413, f"exceeds the limit of {LIMIT_BYTES} bytes"),
]


@pytest.mark.parametrize(("build", "status", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_its_status_and_a_reason(client, make_request, build, status, fragment):
    r = client.post("/v1/score", **build(make_request(0)))
    assert r.status_code == status, r.text
    assert fragment in r.text, r.text


def test_declared_content_length_over_the_limit_is_refused_before_the_body(server):
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (LIMIT_BYTES + 1))  # and never send the body
        reply = b""
        while b"}" not in reply and (chunk := s.recv(4096)):  # the JSON reason ends with "}"
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply
    assert f"request body of {LIMIT_BYTES + 1} bytes exceeds the limit".encode() in reply


def test_the_server_survives_and_still_scores(client, make_request):
    r = client.post("/v1/score", json=make_request(1))
    assert r.status_code == 200 and len(r.json()["scores"]) == 10
