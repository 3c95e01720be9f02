"""The wire format of the scoring service: strict pydantic models and a JSON parser without NaN.

Raw feature values are strings or integers, exactly as they appear in the training log (they are
looked up as strings, so ``42`` and ``"42"`` are the same id); floats, booleans and nulls are
rejected. Timestamps are unix seconds: a millisecond timestamp is larger than :data:`MAX_TIMESTAMP`
and is rejected with that hint.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

# 2286-11-20 in unix seconds; a timestamp in milliseconds (13 digits today) is larger
MAX_TIMESTAMP = 10_000_000_000

Value = StrictStr | StrictInt
Timestamp = Annotated[StrictInt, Field(ge=0, le=MAX_TIMESTAMP,
                                       description="unix seconds (not milliseconds), 0 ≤ t ≤ 10^10")]


class HistoryEvent(BaseModel):
    """One past behaviour: ``ts`` plus behaviour fields (e.g. ``item_id``, ``cate_id``, ``action``)."""

    model_config = ConfigDict(strict=True, extra="allow")
    __pydantic_extra__: dict[str, Value] = Field(init=False)

    ts: Timestamp

    def raw(self) -> dict[str, Any]:
        return {**(self.__pydantic_extra__ or {}), "ts": self.ts}


class ScoreRequest(BaseModel):
    """One user, its context and behaviour history, and the candidates to score.

    Field names inside ``user``, ``context``, ``history`` entries and ``candidates`` are those of the
    model's feature map (``GET /readyz`` lists them); a missing field is encoded as out-of-vocabulary.
    """

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [{
        "user": {"user_id": "u17", "age": 3, "gender": 1, "region": 4},
        "context": {"device": 2},
        "timestamp": 1_700_000_000,
        "history": [{"item_id": 12, "cate_id": 3, "action": 1, "ts": 1_699_990_000}],
        "candidates": [{"item_id": 40, "cate_id": 3}, {"item_id": 41, "cate_id": 5}],
    }]})

    user: dict[str, Value] = Field(description="user-profile fields (raw values)")
    context: dict[str, Value] = Field(default_factory=dict,
                                      description="impression context (hour/weekday come from timestamp)")
    timestamp: Timestamp
    history: list[HistoryEvent] = Field(default_factory=list,
                                        description="past behaviours, any order; the most recent L are kept")
    candidates: list[dict[str, Value]] = Field(description="items to score, 1 ≤ C ≤ the service's limit")

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
        "user": {"user_id": "u17", "age": 3, "gender": 1, "region": 4},
        "events": [{"item_id": 12, "cate_id": 3, "action": 1, "ts": 1_699_990_000}],
    }]})

    user: dict[str, Value] = Field(default_factory=dict, description="user-profile fields (raw values)")
    events: list[HistoryEvent] = Field(description="behaviours to append, 1 ≤ n ≤ the history limit")


class EventsResponse(BaseModel):
    """The user's state after the append. ``created`` is true when this request started a new state (the
    user had none, or it was evicted or built by another model version): the state then holds only these
    events, so send the user's whole history when that was not intended."""

    user_id: str
    behaviours: int
    last_ts: int
    created: bool
    model_version: str


class UserScoreRequest(BaseModel):
    """Candidates to score for a user from its cached state (profile and history come from the state)."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"examples": [{
        "context": {"device": 2}, "timestamp": 1_700_000_000,
        "candidates": [{"item_id": 40, "cate_id": 3}, {"item_id": 41, "cate_id": 5}],
    }]})

    context: dict[str, Value] = Field(default_factory=dict,
                                      description="impression context (hour/weekday come from timestamp)")
    timestamp: Timestamp
    candidates: list[dict[str, Value]] = Field(description="items to score, 1 ≤ C ≤ the service's limit")


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
