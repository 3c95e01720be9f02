"""Routes of the optional stateful path: append a user's behaviours, score from its cached state.

``POST /v1/users/{user_id}/events`` appends raw behaviours (same vocabulary code as ``/v1/score``) to
the user's incremental state; ``POST /v1/users/{user_id}/score`` scores candidates from it;
``DELETE /v1/users/{user_id}`` forgets it. Errors are 4xx with a reason: 400 for a model without an
incremental form, unknown fields or an event older than the state's latest, 404 for a user with no
state (never appended, evicted, or built by a previous model version), 409 for a changed profile or
a concurrent append of the same user (retry). States live in this process only (one cache per
worker: route a user to one worker).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from fastapi import APIRouter

from serving.metrics import ServiceMetrics
from serving.model_store import LoadedModel
from serving.schemas import EventsRequest, EventsResponse, UserScoreRequest, UserScoreResponse
from serving.service import (
    BadRequest,
    Limits,
    check_candidate_count,
    check_candidates,
    check_context,
    check_history,
    check_user,
)
from serving.user_state import UserState, UserStateCache, append_events, encode_profile, score_state


def _graphs(model: LoadedModel):
    if model.incremental is None:
        raise BadRequest("not_incremental", f"model {model.version} has no incremental form: the stateful path "
                                            "needs a model trained with incremental=True over an O(1)-state "
                                            "recurrent mixer (aaren, linear_attn, gated_deltanet); use /v1/score")
    return model.incremental


def _current(cache: UserStateCache, user_id: str, model: LoadedModel) -> UserState | None:
    state = cache.get(user_id)
    if state is not None and state.version != model.version:
        cache.pop(user_id)  # built by another model version: useless to this one
        return None
    return state


def append(model: LoadedModel, cache: UserStateCache, user_id: str, req: EventsRequest, limits: Limits) -> EventsResponse:
    """Validate, then append ``req.events`` (ordered by time, stable) to the user's state; all or nothing."""
    graphs, space = _graphs(model), model.space
    if not req.events or len(req.events) > limits.max_history:
        raise BadRequest("bad_events", f"events must hold 1 to {limits.max_history} behaviours, got {len(req.events)}")
    check_user(space, req.user)
    check_history(space, req.events, part="events")
    events = sorted((e.raw() for e in req.events), key=lambda e: e["ts"])  # stable: ties keep request order
    profile = encode_profile(space, req.user)
    before = _current(cache, user_id, model)
    if before is None:
        base = UserState(model.version, profile, graphs.init, 0, 0)
    else:
        base = before
        if any(not np.array_equal(profile[k], before.profile[k]) for k in profile):
            raise BadRequest("profile_changed", f"user {user_id!r}: the profile differs from the one the state was "
                                                "built with; DELETE /v1/users/{user_id} and append the history again",
                             status=409)
        if events[0]["ts"] < before.last_ts:
            raise BadRequest("event_out_of_order", f"user {user_id!r}: event at ts {events[0]['ts']} is older than the "
                                                   f"latest appended behaviour ({before.last_ts}); a state cannot "
                                                   "insert into its past")
    new = append_events(graphs, space, base, events)
    if not cache.replace(user_id, before, new):
        raise BadRequest("concurrent_update", f"user {user_id!r} was updated by another request meanwhile; retry",
                         status=409)
    return EventsResponse(user_id=user_id, behaviours=new.behaviours, last_ts=new.last_ts, created=before is None,
                          model_version=model.version)


def score(model: LoadedModel, cache: UserStateCache, user_id: str, req: UserScoreRequest,
          limits: Limits) -> UserScoreResponse:
    """Calibrated pCTR of every candidate from the user's cached state."""
    graphs, space = _graphs(model), model.space
    check_candidate_count(len(req.candidates), limits)
    check_context(space, req.context)
    check_candidates(space, req.candidates)
    state = _current(cache, user_id, model)
    if state is None:
        raise BadRequest("unknown_user", f"no state for user {user_id!r} (never appended, evicted, or built by a "
                                         "previous model version): POST /v1/users/{user_id}/events first",
                         status=404)
    scores = score_state(graphs, space, state, {"context": req.context, "timestamp": req.timestamp,
                                                "candidates": req.candidates})
    return UserScoreResponse(scores=scores.tolist(), behaviours=state.behaviours, model_version=model.version)


def user_routes(serving: Callable[[], LoadedModel], cache: UserStateCache, limits: Limits, metrics: ServiceMetrics,
                scoring: threading.BoundedSemaphore, route_class: type, errors: dict) -> APIRouter:
    """The stateful routes; ``serving()`` returns the model version to use (or raises 503)."""
    router = APIRouter(route_class=route_class)

    @router.post("/v1/users/{user_id}/events", response_model=EventsResponse, responses=errors, tags=["stateful"])
    def append_user_events(user_id: str, body: EventsRequest) -> EventsResponse:
        """Append behaviours to the user's cached incremental state (created on first use)."""
        with scoring:
            response = append(serving(), cache, user_id, body, limits)
        metrics.user_states.set(len(cache))
        return response

    @router.post("/v1/users/{user_id}/score", response_model=UserScoreResponse, responses=errors, tags=["stateful"])
    def score_user(user_id: str, body: UserScoreRequest) -> UserScoreResponse:
        """Calibrated click probability of every candidate from the user's cached state."""
        with scoring:
            response = score(serving(), cache, user_id, body, limits)
        metrics.candidates.inc(len(response.scores))
        return response

    @router.delete("/v1/users/{user_id}", tags=["stateful"])
    def forget_user(user_id: str) -> dict:
        """Drop the user's cached state (no error when there is none)."""
        existed = cache.pop(user_id) is not None
        metrics.user_states.set(len(cache))
        return {"user_id": user_id, "deleted": existed}

    return router
