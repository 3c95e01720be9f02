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

import hmac
from collections.abc import Callable

import numpy as np
from fastapi import APIRouter, Header, Request

from serving.admission import Admission, check_shape
from serving.bodies import body_bounds, json_body, parse_body
from serving.metrics import ServiceMetrics
from serving.model_store import LoadedModel
from serving.schemas import EventsRequest, EventsResponse, RequestModels, UserScoreRequest, UserScoreResponse
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
                                            "recurrent mixer (those with recurrent=True in suan.mixers.registry); use /v1/score")
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
                admission: Admission, models: RequestModels, api_key: str, route_class: type,
                errors: dict) -> APIRouter:
    """The stateful routes; ``serving()`` returns the model version to use (or raises 503).

    Appending to and deleting a user's state change what later scores say about that user: with an
    ``api_key`` they need ``X-API-Key``; bodies are bounded and parsed like ``/v1/score``'s."""
    router = APIRouter(route_class=route_class)

    def authorize(key: str) -> None:
        if api_key and not hmac.compare_digest(key.encode(), api_key.encode()):
            raise BadRequest("unauthorized", "this endpoint changes a user's state: send the service's key in "
                                             "X-API-Key ($SUAN_SERVE_API_KEY)", status=401)

    @router.post("/v1/users/{user_id}/events", response_model=EventsResponse, responses=errors, tags=["stateful"],
                 openapi_extra=json_body(models.events))
    async def append_user_events(user_id: str, request: Request,
                                 x_api_key: str = Header(default="")) -> EventsResponse:
        """Append behaviours to the user's cached incremental state (created on first use)."""
        authorize(x_api_key)
        model = serving()
        body, content_type = await request.body(), request.headers.get("content-type", "")
        check_shape(body, **body_bounds(model.space, limits, candidates=False, history=True))
        response = await admission.run(
            lambda: append(model, cache, user_id, parse_body(models.events, body, content_type), limits))
        metrics.user_states.set(len(cache))
        return response

    @router.post("/v1/users/{user_id}/score", response_model=UserScoreResponse, responses=errors, tags=["stateful"],
                 openapi_extra=json_body(models.user_score))
    async def score_user(user_id: str, request: Request) -> UserScoreResponse:
        """Calibrated click probability of every candidate from the user's cached state."""
        model = serving()
        body, content_type = await request.body(), request.headers.get("content-type", "")
        check_shape(body, **body_bounds(model.space, limits, candidates=True, history=False))
        response = await admission.run(
            lambda: score(model, cache, user_id, parse_body(models.user_score, body, content_type), limits))
        metrics.candidates.inc(len(response.scores))
        return response

    @router.delete("/v1/users/{user_id}", responses=errors, tags=["stateful"])
    def forget_user(user_id: str, x_api_key: str = Header(default="")) -> dict:
        """Drop the user's cached state (no error when there is none)."""
        authorize(x_api_key)
        existed = cache.pop(user_id) is not None
        metrics.user_states.set(len(cache))
        return {"user_id": user_id, "deleted": existed}

    return router
