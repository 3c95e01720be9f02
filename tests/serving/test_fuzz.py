"""Property-based fuzzing over real HTTP: random JSON-ish bodies and raw bytes never get a 5xx."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

KNOWN = ["user_id", "age", "gender", "region", "device", "hour", "weekday", "item_id", "cate_id", "action", "ts"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=4), scalars, max_size=2))
names = st.one_of(st.sampled_from(KNOWN), st.text(max_size=8))
raw_ids = st.one_of(st.integers(min_value=-5, max_value=400), st.text(max_size=6))
features = st.dictionaries(names, st.one_of(raw_ids, values), max_size=5)
timestamps = st.one_of(st.integers(min_value=-10, max_value=2**66), scalars)
events = st.builds(lambda f, ts, keep: {**f, "ts": ts} if keep else f, features, timestamps, st.booleans())

# mostly well-formed bodies with random names and values, so that both 2xx and 4xx paths are exercised
bodies = st.fixed_dictionaries(
    {"user": st.one_of(features, values), "timestamp": timestamps, "candidates": st.one_of(
        st.lists(features, max_size=12), values)},
    optional={"context": st.one_of(features, values), "history": st.one_of(st.lists(events, max_size=40), values),
              "extra": values},
)
# valid structure and names with random raw ids and timestamps: exercises the scoring path itself
ids = st.one_of(st.integers(min_value=-(2**63), max_value=2**63), st.integers(min_value=0, max_value=400),
                st.text(max_size=6))
stamps = st.integers(min_value=0, max_value=10**10)


def _section(*fields, min_size=0):
    return st.dictionaries(st.sampled_from(fields), ids, min_size=min_size, max_size=len(fields))


near_valid = st.fixed_dictionaries(
    {"user": _section("user_id", "age", "gender", "region"), "timestamp": stamps,
     "candidates": st.lists(_section("item_id", "cate_id", min_size=1), min_size=1, max_size=30)},
    optional={"context": _section("device"),
              "history": st.lists(st.builds(lambda f, ts: {**f, "ts": ts}, _section("item_id", "cate_id", "action"),
                                            stamps), max_size=40)},
)
mutated = st.builds(lambda body, key, value: {**body, key: value}, near_valid, names, values)
raw = st.one_of(st.binary(max_size=200), st.sampled_from([b"NaN", b"{", b"[]", b'{"user": NaN}', b"null", b"\xff\xfe",
                                                          b"[" * 5000, b'{"timestamp": 1e400}']))


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(near_valid, mutated, bodies).map(lambda b: json.dumps(b).encode()) | raw)
def test_random_bodies_never_get_a_5xx(client, body):
    r = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    event(f"status {r.status_code}")
    assert r.status_code < 500, (r.status_code, r.text, body[:300])
    assert r.status_code in (200, 400, 413, 422), r.text
    if r.status_code == 200:
        request = json.loads(body)
        assert len(r.json()["scores"]) == len(request["candidates"])
    else:
        assert r.json()["detail"], r.text  # always a reason


def test_fuzzing_left_the_server_healthy(client):
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics").text
    assert 'suan_errors_total{kind="internal"}' not in metrics
