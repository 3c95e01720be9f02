"""Scoring one request: decode (schema) → check against the model's feature map → features → predict → encode.

The checks here are the ones a schema cannot express because they depend on the model being
served: which field names exist, and the service's size limits. Every failure is a
:class:`BadRequest` (HTTP 400) whose message names the offending field and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from features.online import FeatureSpace, RequestError
from features.schema import Role
from serving.model_store import LoadedModel
from serving.schemas import ScoreRequest, ScoreResponse
from suan.utils.config import Config, require


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits(Config):
    """Request limits of the service: each bounds what one request or connection may cost.

    Args:
        max_candidates: most candidates per request. Default: 1000.
        max_history: most raw history entries per request, and events per append (more than the model's
            L is fine and truncated to the most recent; 1000 covers every grade's L). Default: 1000.
        max_body_bytes: largest request body in bytes. Default: 4 MiB.
        max_string: longest raw value or field name, in characters. Default: 256.
        max_fields: most fields in one mapping (user, context, a history entry, a candidate). Default: 64.
        queue: requests that may wait for a scoring slot; one more gets 503 with Retry-After. Default: 64.
        request_timeout: seconds from admission to answer; later gets 504. Default: 10.
        header_timeout: seconds a connection may take to send a request's headers before it is closed.
            Default: 10.
        body_timeout: seconds the server waits for each part of a request body (408 after). Default: 10.
        max_connections: open connections and in-flight requests per worker; more get 503 at once. Default: 512.
    """

    max_candidates: int = 1000
    max_history: int = 1000
    max_body_bytes: int = 4 * 1024 * 1024
    max_string: int = 256
    max_fields: int = 64
    queue: int = 64
    request_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 512

    def validate(self) -> None:
        require(self.max_candidates >= 1 and self.max_history >= 0, "max_candidates must be >= 1, max_history >= 0")
        require(self.max_body_bytes >= 1024, "max_body_bytes must be >= 1024")
        require(self.max_string >= 1 and self.max_fields >= 1, "max_string and max_fields must be >= 1")
        require(self.queue >= 0 and self.max_connections >= 1, "queue must be >= 0 and max_connections >= 1")
        require(min(self.request_timeout, self.header_timeout, self.body_timeout) > 0, "timeouts must be > 0")


class BadRequest(RequestError):
    """A well-formed request the model cannot score; ``kind`` labels the error metric, ``status`` is the
    HTTP status (a 4xx). Default status: 400."""

    def __init__(self, kind: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status


def allowed_fields(space: FeatureSpace) -> dict[str, list[str]]:
    """Field names accepted in each part of a request (``GET /readyz`` shows them)."""
    time_ctx = set(space.time_context)
    return {
        "user": [f.name for f in space.fmap.by_role(Role.USER)],
        "context": [f.name for f in space.fmap.by_role(Role.CONTEXT) if f.name not in time_ctx],
        "history": sorted(space.history_fields()) + ["ts"],
        "candidates": list(space.candidate_fields()),
    }


def _check_names(part: str, items: Iterable[tuple[str, Mapping]], allowed: list[str], extra: str = "") -> None:
    unknown: dict[str, str] = {}  # name -> where it first appeared
    known = set(allowed)
    for where, mapping in items:
        for name in mapping:
            if name not in known and name not in unknown:
                unknown[name] = where
    if unknown:
        names = sorted(unknown)
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        raise BadRequest("unknown_field", f"unknown {part} field(s) {names[:10]}{more} (first at "
                                          f"{unknown[names[0]]}); allowed: {allowed}{extra}")


def check_request(space: FeatureSpace, req: ScoreRequest, limits: Limits) -> None:
    """Raise :class:`BadRequest` for unknown field names, no or too many candidates, an absurd history."""
    n_hist = len(req.history)
    check_candidate_count(len(req.candidates), limits)
    if n_hist > limits.max_history:
        raise BadRequest("history_too_long", f"{n_hist} history entries exceed the limit of {limits.max_history} "
                                             f"(--max-history); the model reads only the {space.max_len} most "
                                             "recent, send those")
    check_user(space, req.user)
    check_context(space, req.context)
    check_history(space, req.history)
    check_candidates(space, req.candidates)
    late = next((k for k, h in enumerate(req.history) if h.ts > req.timestamp), None)
    if late is not None:
        raise BadRequest("history_after_impression", f"history[{late}] at ts {req.history[late].ts} is after the "
                                                      f"impression timestamp {req.timestamp}: a behaviour cannot "
                                                      "come from the future (both are unix seconds)")


def check_candidate_count(n_cand: int, limits: Limits) -> None:
    if n_cand == 0:
        raise BadRequest("empty_candidates", "candidates is empty: send at least one candidate to score")
    if n_cand > limits.max_candidates:
        raise BadRequest("too_many_candidates", f"{n_cand} candidates exceed the limit of {limits.max_candidates} "
                                                "per request (--max-candidates): split the request")


def check_user(space: FeatureSpace, user: Mapping) -> None:
    _check_names("user", [("user", user)], allowed_fields(space)["user"])


def check_context(space: FeatureSpace, context: Mapping) -> None:
    time_ctx = sorted(set(space.time_context))
    _check_names("context", [("context", context)], allowed_fields(space)["context"],
                 f"; {time_ctx} are derived from timestamp" if time_ctx else "")


def check_history(space: FeatureSpace, history: list, part: str = "history") -> None:
    _check_names("history", ((f"{part}[{k}]", h.__pydantic_extra__ or {}) for k, h in enumerate(history)),
                 allowed_fields(space)["history"])


def check_candidates(space: FeatureSpace, candidates: list[dict]) -> None:
    """Unknown field names and empty candidates (the count limits are checked by the caller)."""
    allowed = allowed_fields(space)["candidates"]
    _check_names("candidate", ((f"candidates[{k}]", c) for k, c in enumerate(candidates)), allowed)
    for k, c in enumerate(candidates):
        if not c:
            raise BadRequest("empty_candidate", f"candidates[{k}] has no fields; give some of {allowed}")


def score(model: LoadedModel, req: ScoreRequest, limits: Limits) -> ScoreResponse:
    """Calibrated pCTR of every candidate, in request order, by ``model`` (read once by the caller)."""
    check_request(model.space, req, limits)
    scores = model.predict(req.raw())
    return ScoreResponse(scores=scores.tolist(), model_version=model.version)
