"""``suan serve``: load an exported model (folder or MLflow registry URI), then serve it with uvicorn.

The model is loaded and warmed up before the server binds, so a bad ``--model`` fails the command
at once instead of leaving a server that never becomes ready. Imports stay torch-free: nothing
here or in ``serving`` pulls torch or Lightning into the serving process.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.args import ServeArgs
from pipelines.tracking import tracking_uri
from serving.model_store import ModelLoadError, ModelStore
from serving.server import ServiceConfig, configure_logging, run
from serving.service import Limits
from suan.utils.config import ConfigError


def service_config(args: ServeArgs) -> ServiceConfig:
    """The serving package's config for these command-line options."""
    is_registry = args.model.startswith("models:/")
    # a registry only when one was named (or the model comes from one): a reload to models:/ must never
    # conjure an MLflow database in the working directory
    registry = bool(args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")) or is_registry
    return ServiceConfig(
        model=args.model if is_registry else str(Path(args.model).resolve()),
        threads=args.threads, concurrency=args.concurrency, device=args.device, watch_seconds=args.watch_seconds,
        max_users=args.max_users, model_roots=tuple(str(Path(r).resolve()) for r in args.model_roots),
        tracking_uri=tracking_uri(args.mlflow_uri)[0] if registry else "",
        limits=Limits(max_candidates=args.max_candidates, max_history=args.max_history,
                      max_body_bytes=args.max_body_bytes, max_string=args.max_string, max_fields=args.max_fields,
                      queue=args.queue, request_timeout=args.request_timeout, header_timeout=args.header_timeout,
                      body_timeout=args.body_timeout, max_connections=args.max_connections),
    )


def run_serve(args: ServeArgs) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    configure_logging(args.log_level)
    cfg = service_config(args)
    store = ModelStore(cfg.model, threads=cfg.threads, device=cfg.device, tracking_uri=cfg.tracking_uri,
                       warm_candidates=min(cfg.limits.max_candidates, 100))
    try:
        model, _ = store.load()  # with several workers this is a fail-fast check; each worker loads its own
    except ModelLoadError as exc:
        raise ConfigError(f"--model: {exc}") from exc
    print(f"serving {model.version} from {model.source} on http://{args.host}:{args.port} "
          f"({', '.join(model.providers)}; docs at /docs)", flush=True)
    if args.workers > 1:
        store = model = None  # each worker loads its own copy; the supervisor keeps none
    run(cfg, host=args.host, port=args.port, workers=args.workers, store=store, access_log=args.access_log,
        log_level=args.log_level)
