"""The HTTP service: FastAPI routes, body-size and metrics middleware, error handlers, uvicorn runner.

Routes: ``POST /v1/score``, ``GET /healthz`` (process alive), ``GET /readyz`` (a model is loaded),
``GET /metrics`` (Prometheus text), ``POST /admin/reload`` (load beside, swap), OpenAPI at
``/docs``, and the optional stateful path of ``serving.stateful`` (``POST /v1/users/{user_id}/events``,
``POST /v1/users/{user_id}/score``, ``DELETE /v1/users/{user_id}``). Bad input always gets a 4xx with
a reason: 413 for an oversized body (declared or actual bytes), 422 for malformed JSON (NaN/Infinity
included) or a schema violation, 400 for field names the model does not know and for the count
limits, 404/409 on the stateful path (no state; changed profile or concurrent append). Torch is
never imported here.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from serving.admission import Admission, check_shape
from serving.bodies import body_bounds, json_body, parse_body
from serving.heap import settle_heap
from serving.metrics import CONTENT_TYPE, ServiceMetrics
from serving.model_store import ModelLoadError, ModelStore
from serving.schemas import (
    ErrorResponse,
    ReloadRequest,
    ReloadResponse,
    ScoreResponse,
    loads_strict,
    request_models,
)
from serving.service import BadRequest, Limits, allowed_fields, score
from serving.stateful import user_routes
from serving.user_state import UserStateCache
from suan.utils.config import Config, require

log = logging.getLogger("suan.serving")
audit = logging.getLogger("suan.serving.audit")  # one line per model-control action
CONFIG_ENV = "SUAN_SERVE_CONFIG"  # JSON ServiceConfig handed to uvicorn worker processes
ADMIN_TOKEN_ENV = "SUAN_SERVE_ADMIN_TOKEN"
API_KEY_ENV = "SUAN_SERVE_API_KEY"
MAX_ERRORS = 20
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this
MAX_HEAD_BYTES = 64 * 1024  # request line + headers
PATHS = ("/v1/score", "/healthz", "/readyz", "/metrics", "/admin/reload", "/docs", "/openapi.json")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceConfig(Config):
    """What one service process serves and how.

    Args:
        model: serving folder, ``models:/name/version`` or ``models:/name@alias``.
        threads: ONNX Runtime intra-op threads per request. Default: 1.
        device: auto (CUDA when onnxruntime offers it), cpu or cuda. Default: auto.
        tracking_uri: MLflow tracking URI for ``models:/`` sources. Default: "".
        watch_seconds: poll a model folder this often and reload when it is replaced (0 = off). Default: 0.
        limits: request limits. Default: :class:`Limits` defaults.
        concurrency: requests scored at once; the others wait their turn in arrival order instead of
            sharing the cores (which stretches every one of them). 0 = CPU cores // threads. Default: 0.
        max_users: most users whose incremental state is cached (stateful path; least recently used
            evicted first). Default: 10000.
        model_roots: folders ``/admin/reload`` may load from (resolved, symlinks followed; () = the folder of
            the model served at start; registry URIs need ``tracking_uri``). Default: ().
    """

    model: str
    threads: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    tracking_uri: str = ""
    watch_seconds: float = 0.0
    limits: Limits = Limits()
    concurrency: int = 0
    max_users: int = 10_000
    model_roots: tuple[str, ...] = ()

    def validate(self) -> None:
        require(bool(self.model), "model must not be empty")
        require(self.max_users >= 1, "max_users must be >= 1")
        require(self.threads >= 1 and self.watch_seconds >= 0, "threads must be >= 1, watch_seconds >= 0")
        require(self.concurrency >= 0, "concurrency must be >= 0 (0 = CPU cores // threads)")

    @property
    def scoring_slots(self) -> int:
        """How many requests are scored at once (``concurrency``, or CPU cores // threads)."""
        return self.concurrency or max(1, (os.cpu_count() or 1) // self.threads)

    @property
    def roots(self) -> tuple[Path, ...]:
        """Resolved folders a reload may load from."""
        if self.model_roots:
            return tuple(Path(r).resolve() for r in self.model_roots)
        return () if self.model.startswith("models:/") else (Path(self.model).resolve().parent,)


def _json_error(status: int, detail: str) -> tuple[dict, bytes]:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}, body


class BodyLimitMiddleware:
    """413 when the declared Content-Length or the bytes actually received exceed ``limit``.

    The body is read here in full (the JSON parser needs all of it anyway) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, limit: int, metrics: ServiceMetrics, timeout: float = 10.0) -> None:
        self.app, self.limit, self.metrics, self.timeout = app, limit, metrics, timeout

    async def _reject(self, send: Send, size: str) -> None:
        self.metrics.errors.inc(kind="body_too_large")
        start, body = _json_error(413, f"request body of {size} bytes exceeds the limit of {self.limit} "
                                          "bytes (--max-body-bytes)")
        await send(start)
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send, declared.decode())
        chunks, size, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                self.metrics.errors.inc(kind="body_timeout")
                start, body = _json_error(408, f"the request body did not arrive within {self.timeout:g} s "
                                               "(--body-timeout)")
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._reject(send, f"more than {self.limit}")
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def _path_label(path: str) -> str:
    """The route template of a path (user ids are not labels), ``other`` for unknown paths."""
    if path in PATHS:
        return path
    parts = path.split("/")  # "", "v1", "users", user_id[, "events" | "score"]
    if parts[:3] != ["", "v1", "users"] or len(parts) not in (4, 5) or not parts[3]:
        return "other"
    if len(parts) == 4:
        return "/v1/users/{user_id}"
    return f"/v1/users/{{user_id}}/{parts[4]}" if parts[4] in ("events", "score") else "other"


class MetricsMiddleware:
    """Counts every HTTP request by path and status and observes its latency (unknown paths → ``other``)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = _path_label(scope["path"])
        status, start = 0, time.perf_counter()

        async def observe(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        except Exception:
            status = status or 500  # the outer error middleware answers 500
            raise
        finally:
            # 499: the client went away before any response (nginx's convention)
            self.metrics.requests.inc(path=path, status=str(status or 499))
            self.metrics.latency.observe(time.perf_counter() - start, path=path)


class StrictJSONRequest(Request):
    """A request whose JSON body is parsed without NaN/Infinity (see ``serving.schemas.loads_strict``)."""

    async def json(self):
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return route


def _validation_detail(exc: RequestValidationError, content_type: str) -> list[dict]:
    """Location, message and type of each error (inputs are not echoed; at most ``MAX_ERRORS`` listed)."""
    errors = exc.errors()
    detail = []
    for err in errors[:MAX_ERRORS]:
        msg = err.get("msg", "")
        if err.get("type") == "json_invalid":
            msg = f"invalid JSON: {err.get('ctx', {}).get('error', msg)}"
        elif err.get("type") == "model_attributes_type" and "json" not in content_type:
            msg += " (send the body as JSON with Content-Type: application/json)"
        detail.append({"loc": list(err.get("loc", ())), "msg": msg, "type": err.get("type", "")})
    if len(errors) > MAX_ERRORS:
        detail.append({"loc": ["body"], "msg": f"{len(errors) - MAX_ERRORS} more errors not listed",
                       "type": "truncated"})
    return detail


def _install_error_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = _validation_detail(exc, request.headers.get("content-type", ""))
        metrics.errors.inc(kind="invalid_json" if any(d["type"] == "json_invalid" for d in detail) else "validation")
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        metrics.errors.inc(kind=exc.kind)
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=getattr(exc, "headers", None))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        metrics.errors.inc(kind=f"http_{exc.status_code}")
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        metrics.errors.inc(kind="internal")
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)


ERRORS = {400: {"model": ErrorResponse, "description": "unknown field names, no or too many candidates, a body "
                                                         "more complex than any valid request"},
          401: {"model": ErrorResponse, "description": "a protected endpoint without its token or key"},
          403: {"model": ErrorResponse, "description": "model control disabled, or a model outside the roots"},
          404: {"model": ErrorResponse, "description": "stateful path: no cached state for the user"},
          408: {"model": ErrorResponse, "description": "the request body did not arrive in time"},
          409: {"model": ErrorResponse, "description": "stateful path: profile changed or concurrent append"},
          413: {"model": ErrorResponse, "description": "request body too large"},
          422: {"model": ErrorResponse, "description": "malformed JSON or schema violation"},
          503: {"model": ErrorResponse, "description": "no model loaded yet, or at capacity (Retry-After)"},
          504: {"model": ErrorResponse, "description": "not answered within the request deadline"}}


class ModelControl:
    """``/admin/reload``: off without a token; loads only registry versions (when a registry is configured)
    and folders under the model roots; answers without file-system paths; logs every action (audit)."""

    def __init__(self, store: ModelStore, token: str, roots: tuple[Path, ...], registry: bool) -> None:
        self.store, self.token, self.roots, self.registry = store, token, roots, registry

    def authorize(self, authorization: str, client: str) -> None:
        if not self.token:
            audit.warning("reload refused from %s: model control is disabled", client)
            raise HTTPException(403, f"model control is disabled: start the service with ${ADMIN_TOKEN_ENV} set")
        if not hmac.compare_digest(authorization.encode(), f"Bearer {self.token}".encode()):
            audit.warning("reload refused from %s: bad or missing token", client)
            raise HTTPException(401, f"reload needs 'Authorization: Bearer <token>' (the token in ${ADMIN_TOKEN_ENV})")

    def allowed(self, source: str) -> str:
        """The source to load ("" = the current one), or a 400/403 that names no path."""
        if not source:
            return ""
        if source.startswith("models:/"):
            if not self.registry:
                raise BadRequest("no_registry", "no model registry is configured for this service (--mlflow-uri or "
                                                "$MLFLOW_TRACKING_URI at start): reload a folder under the model roots")
            return source
        resolved = Path(source).resolve()  # symlinks followed: a link out of a root is out
        if not any(resolved.is_relative_to(root) for root in self.roots):
            raise BadRequest("outside_roots", "that folder is not under the service's model roots (--model-roots)",
                             status=403)
        return str(resolved)

    def reload(self, source: str, authorization: str, client: str) -> ReloadResponse:
        self.authorize(authorization, client)
        start = time.perf_counter()
        try:
            new, previous = self.store.load(self.allowed(source))
        except BadRequest as exc:
            audit.warning("reload of %r refused from %s: %s", source, client, exc)
            raise
        except ModelLoadError as exc:
            audit.warning("reload of %r from %s failed: %s", source, client, exc)
            raise BadRequest("reload_failed", "reload failed, still serving the previous version: the model could "
                                              "not be loaded or is incomplete (the server log has the reason)") from exc
        audit.warning("reload from %s: now serving %s (was %s)", client, new.version,
                      previous.version if previous else None)
        return ReloadResponse(model_version=new.version, previous_version=previous.version if previous else "",
                              source=new.source, seconds=time.perf_counter() - start)


def _routes(store: ModelStore, cfg: ServiceConfig, metrics: ServiceMetrics, control: ModelControl,
            api_key: str) -> APIRouter:
    limits = cfg.limits
    router = APIRouter(route_class=StrictJSONRoute)
    models = request_models(limits.max_candidates, limits.max_history, limits.max_string, limits.max_fields)
    admission = Admission(cfg.scoring_slots, limits.queue, limits.request_timeout)

    def serving():
        model = store.current
        if model is None:
            raise HTTPException(503, f"no model loaded yet{': ' + store.error if store.error else ''}")
        return model

    cache = UserStateCache(cfg.max_users, on_evict=lambda n: metrics.user_state_evictions.inc(n))
    router.include_router(user_routes(serving, cache, limits, metrics, admission, models, api_key,
                                      StrictJSONRoute, ERRORS))

    @router.post("/v1/score", response_model=ScoreResponse, responses=ERRORS, tags=["scoring"],
                 openapi_extra=json_body(models.score))
    async def score_candidates(request: Request) -> ScoreResponse:
        """Calibrated click probability of every candidate for one user, in candidate order."""
        model = serving()  # read once: a reload during this request does not affect it
        body, content_type = await request.body(), request.headers.get("content-type", "")
        check_shape(body, **body_bounds(model.space, limits, candidates=True, history=True))
        response = await admission.run(lambda: score(model, parse_body(models.score, body, content_type), limits))
        metrics.candidates.inc(len(response.scores))
        return response

    @router.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        """The process is alive (says nothing about the model)."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["ops"], responses={503: {"model": ErrorResponse}})
    def readyz() -> JSONResponse:
        """A model is loaded and warmed up: its version, providers, limits and accepted field names."""
        model = store.current
        if model is None:
            return JSONResponse({"status": "failed" if store.error else "loading", "detail": store.error},
                                status_code=503)
        # a registry URI, or only the folder's name: the probe is unauthenticated and paths stay private
        source = model.source if model.source.startswith("models:/") else Path(model.source).name
        return JSONResponse({"status": "ready", "model_version": model.version, "source": source,
                             "providers": list(model.providers),
                             "max_history_kept": model.space.max_len, "limits": limits.to_dict(),
                             "fields": allowed_fields(model.space)})

    @router.get("/metrics", tags=["ops"])
    def prometheus() -> PlainTextResponse:
        """Prometheus text format: requests, latency histogram, errors by kind, model version."""
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    @router.post("/admin/reload", response_model=ReloadResponse, responses=ERRORS, tags=["ops"])
    def reload(request: Request, body: ReloadRequest | None = None,
               authorization: str = Header(default="")) -> ReloadResponse:
        """Load a model (default: the current source again) beside the serving one, then swap atomically.

        Needs ``Authorization: Bearer $SUAN_SERVE_ADMIN_TOKEN`` (off without a token); loads only folders
        under the model roots and, with a registry configured, ``models:/`` versions and aliases."""
        client = request.client.host if request.client else "?"
        return control.reload(body.model if body else "", authorization, client)

    return router


def create_app(cfg: ServiceConfig, store: ModelStore | None = None, admin_token: str | None = None,
               api_key: str | None = None, load_before_serving: bool = False) -> FastAPI:
    """The service app; ``store`` may be pre-loaded (else the model loads at startup, in the background
    unless ``load_before_serving``).

    Args:
        cfg: what to serve and the limits.
        store: a :class:`ModelStore` (loaded or not). Default: a new one for ``cfg.model``.
        admin_token: bearer token of ``/admin/reload`` (None = ``$SUAN_SERVE_ADMIN_TOKEN``; "" = model
            control disabled). Default: None.
        api_key: ``X-API-Key`` required to append to or delete a user's state (None = ``$SUAN_SERVE_API_KEY``;
            "" = not required). Default: None.
        load_before_serving: finish the first load inside the lifespan startup, before uvicorn starts
            accepting. Worker processes of ``--workers N`` share one socket, so one worker's ``/readyz``
            says nothing about the next: a worker still loading would answer a client's request with 503.
            Default: False (one process: ``/healthz`` answers while the model loads).
    """
    if store is None:
        store = ModelStore(cfg.model, threads=cfg.threads, device=cfg.device, tracking_uri=cfg.tracking_uri,
                           warm_candidates=min(cfg.limits.max_candidates, 100), metrics=ServiceMetrics())
    elif store.metrics is None:
        store.metrics = ServiceMetrics()
        if store.current is not None:  # loaded before the app existed (suan serve fails fast that way)
            store.metrics.reloads.inc(result="ok")
    metrics = store.metrics
    if store.current is not None:
        metrics.set_model(store.current.version)
    token = os.environ.get(ADMIN_TOKEN_ENV, "") if admin_token is None else admin_token
    key = os.environ.get(API_KEY_ENV, "") if api_key is None else api_key
    control = ModelControl(store, token, cfg.roots, registry=bool(cfg.tracking_uri))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if store.current is None and load_before_serving:
            await asyncio.to_thread(store.first_load)
        elif store.current is None:
            store.load_in_background()
        else:
            settle_heap()  # the app's own objects too; a model loaded later settles them on load
        if cfg.watch_seconds > 0:
            store.watch(cfg.watch_seconds)
        yield
        store.stop()

    app = FastAPI(title="SUAN scoring service", version="1", lifespan=lifespan,
                  description="Calibrated pCTR for one user and C candidates from an exported SUAN model "
                              "(ONNX Runtime, no torch at request time).")
    app.state.store, app.state.metrics = store, metrics
    _install_error_handlers(app, metrics)
    app.include_router(_routes(store, cfg, metrics, control, key))
    _declare_bodies(app, cfg.limits)
    app.add_middleware(BodyLimitMiddleware, limit=cfg.limits.max_body_bytes, metrics=metrics,
                       timeout=cfg.limits.body_timeout)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: outermost, sees every status
    return app


def _declare_bodies(app: FastAPI, limits: Limits) -> None:
    """Put the request models (read by hand in the endpoints) into the OpenAPI components."""
    models = request_models(limits.max_candidates, limits.max_history, limits.max_string, limits.max_fields)
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (models.score, models.events, models.user_score):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        return schema

    app.openapi = openapi


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes (``--workers N``): the config comes from ``$SUAN_SERVE_CONFIG``."""
    configure_logging(os.environ.get(CONFIG_ENV + "_LOG_LEVEL", "info"))
    cfg = ServiceConfig.from_dict(json.loads(os.environ[CONFIG_ENV]))
    HeadDeadlineH11.head_timeout = cfg.limits.header_timeout  # this worker's connections
    return create_app(cfg, load_before_serving=True)


class HeadDeadlineH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol plus a deadline on each request head: a connection that has not sent a
    complete request line and headers ``head_timeout`` s after it opened (or after its last response) is
    closed. uvicorn has no such timer: 2,000 connections that never finished their headers were held 60 s+."""

    head_timeout = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:  # a whole head arrived in time
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def server_options(cfg: ServiceConfig) -> dict:
    """uvicorn settings that bound connections: head deadline, idle keep-alive, head size, concurrency."""
    HeadDeadlineH11.head_timeout = cfg.limits.header_timeout
    return {"http": HeadDeadlineH11, "timeout_keep_alive": KEEP_ALIVE_S, "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
            "limit_concurrency": cfg.limits.max_connections}


def run(cfg: ServiceConfig, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        store: ModelStore | None = None, access_log: bool = False, log_level: str = "info") -> None:
    """Serve until interrupted. One worker serves ``store`` (pre-loaded); several re-load the model each."""
    import uvicorn

    configure_logging(log_level)
    if workers == 1:
        uvicorn.run(create_app(cfg, store), host=host, port=port, access_log=access_log, log_level=log_level,
                    **server_options(cfg))
        return
    os.environ[CONFIG_ENV] = cfg.to_json()
    os.environ[CONFIG_ENV + "_LOG_LEVEL"] = log_level
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("serving.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                            access_log=access_log, log_level=log_level, **server_options(cfg))
    Multiprocess(config, sockets=[no_delay(config.bind_socket())]).run()


def no_delay(sock: socket.socket) -> socket.socket:
    """Set TCP_NODELAY on the shared listening socket; accepted connections inherit it (Linux, macOS).

    uvicorn's multi-worker socket is made with protocol 0, so asyncio's own per-connection TCP_NODELAY
    (which checks for IPPROTO_TCP) is skipped; Nagle then holds a response's second write until the
    client's delayed ACK: every keep-alive request took >= 40 ms (48 ms p50 vs 3.5 ms for one worker).
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
