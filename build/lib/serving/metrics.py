"""A tiny, thread-safe Prometheus registry: counters, gauges and histograms in the text format.

Written by hand (no client library) because the service needs four metrics; the output follows the
text exposition format 0.0.4: ``# HELP``/``# TYPE`` lines, escaped label values, cumulative
histogram buckets ending in ``+Inf`` plus ``_sum`` and ``_count``. Metrics are per process: with
``--workers N`` each worker answers ``/metrics`` for itself.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class _Metric:
    """A named family of series keyed by label values; scalar series render as ``name{labels} value``."""

    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], float] = {}

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.label_names)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    """A value that can go up and down (``set`` replaces it)."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class Histogram(_Metric):
    """Observations counted into fixed upper-bound buckets (cumulative in the output)."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list] = {}  # key -> [per-bucket counts (+Inf last), sum, count]

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        slot = bisect.bisect_left(self.buckets, value)  # first bucket with bound >= value
        with self._lock:
            series = self._series.setdefault(key, [[0] * (len(self.buckets) + 1), 0.0, 0])
            series[0][slot] += 1
            series[1] += value
            series[2] += 1

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return series[2] if series else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, ([*s[0]], s[1], s[2])) for k, s in self._series.items())
        lines = self.header()
        for key, (counts, total, n) in items:
            running = 0
            for bound, c in zip((*self.buckets, math.inf), counts, strict=True):
                running += c
                le = _labels(self.label_names, key, f'le="{_number(bound)}"')
                lines.append(f"{self.name}_bucket{le} {running}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {n}")
        return lines


class Registry:
    """The metrics of one service instance, rendered together."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        return "\n".join(line for m in self._metrics for line in m.render()) + "\n"


class ServiceMetrics:
    """The scoring service's metrics.

    ``suan_requests_total{path,status}``, ``suan_request_duration_seconds{path}`` (histogram),
    ``suan_errors_total{kind}``, ``suan_model_info{version}`` (1 for the serving version),
    ``suan_model_reloads_total{result}``, ``suan_candidates_scored_total``, ``suan_user_states`` and
    ``suan_user_state_evictions_total`` (the stateful path).
    """

    def __init__(self) -> None:
        self.registry = Registry()
        add = self.registry.add
        self.requests = add(Counter("suan_requests_total", "HTTP requests by path and status code.",
                                    ("path", "status")))
        self.latency = add(Histogram("suan_request_duration_seconds", "Request latency in seconds, by path.",
                                     ("path",)))
        self.errors = add(Counter("suan_errors_total", "Rejected or failed requests by kind.", ("kind",)))
        self.model = add(Gauge("suan_model_info", "The model version being served (value 1).", ("version",)))
        self.reloads = add(Counter("suan_model_reloads_total", "Model (re)loads by result.", ("result",)))
        self.candidates = add(Counter("suan_candidates_scored_total", "Candidates scored."))
        self.user_states = add(Gauge("suan_user_states", "Users with a cached incremental state."))
        self.user_state_evictions = add(Counter("suan_user_state_evictions_total",
                                                "Cached user states evicted (least recently used) to stay in bounds."))

    def set_model(self, version: str) -> None:
        self.model.clear()
        self.model.set(1, version=version)

    def render(self) -> str:
        return self.registry.render()
