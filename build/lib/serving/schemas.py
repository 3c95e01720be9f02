"""The wire format of the scoring service: strict pydantic models and a JSON parser without NaN.

Raw feature values are strings or integers, exactly as they appear in the training log (they are
looked up as strings, so ``42`` and ``"42"`` are the same id); floats, booleans and nulls are
rejected. Timestamps are unix seconds: a millisecond timestamp is larger than :data:`MAX_TIMESTAMP`
and is rejected with that hint.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints, model_validator

# 2286-11-20 in unix seconds; a timestamp in milliseconds (13 digits today) is larger
MAX_TIMESTAMP = 10_000_000_000

Timestamp = Annotated[StrictInt, Field(ge=0, le=MAX_TIMESTAMP,
                                       description="unix seconds (not milliseconds), 0 ≤ t ≤ 10^10")]


@dataclass(frozen=True)
class RequestModels:
    """The request bodies of one service, their sizes declared from its limits (so OpenAPI shows them)."""

    history_event: type[BaseModel]
    score: type[BaseModel]
    events: type[BaseModel]
    user_score: type[BaseModel]


def request_models(max_candidates: int = 1000, max_history: int = 1000, max_string: int = 256,
                   max_fields: int = 64) -> RequestModels:
    """Strict request models whose lists, mappings and strings are bounded by the service's limits.

    Args:
        max_candidates: most candidates. max_history: most history entries (and events per append).
        max_string: longest raw value or field name. max_fields: most fields per mapping.
    """
    name = Annotated[StrictStr, StringConstraints(max_length=max_string)]
    value = Annotated[StrictStr, StringConstraints(max_length=max_string)] | StrictInt
    fields = Annotated[dict[name, value], Field(max_length=max_fields)]

    class HistoryEvent(BaseModel):
        """One past behaviour: ``ts`` plus behaviour fields (e.g. ``item_id``, ``cate_id``, ``action``)."""

        model_config = ConfigDict(strict=True, extra="allow")
        __pydantic_extra__: dict[name, value] = Field(init=False)

        ts: Timestamp

        @model_validator(mode="before")
        @classmethod
        def _few_fields(cls, data: Any) -> Any:
            if isinstance(data, dict) and len(data) > max_fields:
                raise ValueError(f"a history entry has {len(data)} fields; at most {max_fields}")
            return data

        def raw(self) -> dict[str, Any]:
            return {**(self.__pydantic_extra__ or {}), "ts": self.ts}

    class ScoreRequest(BaseModel):
        """One user, its context and behaviour history, and the candidates to score.

        Field names inside ``user``, ``context``, ``history`` entries and ``candidates`` are those of the
        model's feature map (``GET /readyz`` lists them); a missing field is encoded as out-of-vocabulary.
        """

        model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

        user: fields = Field(description="user-profile fields (raw values)")
        context: fields = Field(default_factory=dict,
                                description="impression context (hour/weekday come from timestamp)")
        timestamp: Timestamp
        history: list[HistoryEvent] = Field(default_factory=list, max_length=max_history,
                                            description="past behaviours, any order; the most recent L are kept")
        candidates: list[fields] = Field(max_length=max_candidates, description="items to score, 1 ≤ C")

        def raw(self) -> dict[str, Any]:
            """The plain request dict of ``features.online.encode_request``."""
            return {"user": self.user, "context": self.context, "timestamp": self.timestamp,
                    "history": [h.raw() for h in self.history], "candidates": self.candidates}

    class EventsRequest(BaseModel):
        """New behaviours of one user for its cached incremental state (stateful path).

        ``user`` is the user's profile: it is fixed by the first append (the state depends on it) and must
        not change afterwards. Events may come in any order within a request but none may be older than
        the user's latest appended behaviour.
        """

        model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [{
            "user": EXAMPLE["user"], "events": EXAMPLE["history"]}]})

        user: fields = Field(default_factory=dict, description="user-profile fields (raw values)")
        events: list[HistoryEvent] = Field(max_length=max_history, description="behaviours to append, 1 ≤ n")

    class UserScoreRequest(BaseModel):
        """Candidates to score for a user from its cached state (profile and history come from the state)."""

        model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [{
            "context": EXAMPLE["context"], "timestamp": EXAMPLE["timestamp"], "candidates": EXAMPLE["candidates"]}]})

        context: fields = Field(default_factory=dict,
                                description="impression context (hour/weekday come from timestamp)")
        timestamp: Timestamp
        candidates: list[fields] = Field(max_length=max_candidates, description="items to score, 1 ≤ C")

    return RequestModels(HistoryEvent, ScoreRequest, EventsRequest, UserScoreRequest)


EXAMPLE = {"user": {"user_id": "u17", "age": 3, "gender": 1, "region": 4}, "context": {"device": 2},
           "timestamp": 1_700_000_000, "history": [{"item_id": 12, "cate_id": 3, "action": 1, "ts": 1_699_990_000}],
           "candidates": [{"item_id": 40, "cate_id": 3}, {"item_id": 41, "cate_id": 5}]}
# the request models at the default limits (type hints, tests, clients)
DEFAULT_MODELS = request_models()
HistoryEvent, ScoreRequest = DEFAULT_MODELS.history_event, DEFAULT_MODELS.score
EventsRequest, UserScoreRequest = DEFAULT_MODELS.events, DEFAULT_MODELS.user_score


class EventsResponse(BaseModel):
    """The user's state after the append. ``created`` is true when this request started a new state (the
    user had none, or it was evicted or built by another model version): the state then holds only these
    events, so send the user's whole history when that was not intended."""

    user_id: str
    behaviours: int
    last_ts: int
    created: bool
    model_version: str


class UserScoreResponse(BaseModel):
    """Calibrated click probabilities in candidate order, from a state of ``behaviours`` behaviours."""

    scores: list[float]
    behaviours: int
    model_version: str


class ScoreResponse(BaseModel):
    """Calibrated click probabilities in candidate order and the version that computed them."""

    scores: list[float]
    model_version: str


class ReloadRequest(BaseModel):
    """What to load: a serving folder or ``models:/name/version`` / ``models:/name@alias``.

    Empty: reload the current source (a folder re-read, or the registry URI resolved again).
    """

    model_config = ConfigDict(strict=True, extra="forbid")
    model: str = ""


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str
    source: str
    seconds: float


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]]


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number (non-finite values are rejected)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows to infinity")
    return value


def loads_strict(raw: bytes | str) -> Any:
    """``json.loads`` that rejects ``NaN``, ``Infinity`` and overflowing numbers.

    Every failure (bad UTF-8, too deep nesting, an over-long integer) becomes a
    :class:`json.JSONDecodeError` so the framework answers 422 ``json_invalid`` with the reason.
    """
    try:
        return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        reason = "nesting too deep" if isinstance(exc, RecursionError) else str(exc)
        raise json.JSONDecodeError(reason, "", 0) from None
