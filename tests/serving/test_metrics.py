"""The hand-written Prometheus text format: counters, gauges, cumulative histograms, escaping."""

from __future__ import annotations

import threading

import pytest

from serving.metrics import Counter, Gauge, Histogram, Registry, ServiceMetrics


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count():
    h = Histogram("lat_seconds", "latency", ("path",), buckets=(0.01, 0.1, 1.0))
    for v in (0.005, 0.01, 0.05, 0.5, 3.0):
        h.observe(v, path="/a")
    lines = h.render()
    assert lines[:2] == ["# HELP lat_seconds latency", "# TYPE lat_seconds histogram"]
    assert lines[2:] == [
        'lat_seconds_bucket{path="/a",le="0.01"} 2',  # le is inclusive: 0.01 falls in the 0.01 bucket
        'lat_seconds_bucket{path="/a",le="0.1"} 3',
        'lat_seconds_bucket{path="/a",le="1"} 4',
        'lat_seconds_bucket{path="/a",le="+Inf"} 5',
        'lat_seconds_sum{path="/a"} 3.565',
        'lat_seconds_count{path="/a"} 5',
    ]


def test_counter_gauge_labels_and_escaping():
    registry = Registry()
    c = registry.add(Counter("req_total", "requests", ("status",)))
    g = registry.add(Gauge("info", "model", ("version",)))
    c.inc(status="200")
    c.inc(2, status="200")
    g.set(1, version='a"b\\c\nd')
    g.clear()
    g.set(1, version="v2")
    text = registry.render()
    assert 'req_total{status="200"} 3\n' in text and 'info{version="v2"} 1\n' in text
    assert "a\\\"b" not in text  # cleared
    assert Gauge("x", "y", ("v",)).render() == ["# HELP x y", "# TYPE x gauge"]
    g.set(1, version='a"b\\c\nd')
    assert 'info{version="a\\"b\\\\c\\nd"} 1' in registry.render()
    with pytest.raises(ValueError, match="labels"):
        c.inc(path="/x")


def test_counters_are_thread_safe():
    m = ServiceMetrics()

    def work():
        for _ in range(2000):
            m.requests.inc(path="/v1/score", status="200")
            m.latency.observe(0.002, path="/v1/score")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.requests.value(path="/v1/score", status="200") == 8000
    assert m.latency.count(path="/v1/score") == 8000
