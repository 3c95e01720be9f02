"""Loaded model versions and the one reference the service reads: load beside, warm up, swap.

A :class:`LoadedModel` is immutable (feature space + ONNX Runtime session). :class:`ModelStore`
holds the serving version in a single attribute; a request reads it once and keeps that object for
its whole life, so a reload (build the new version completely, warm it up, then rebind the
attribute) never changes the model under a request in flight, and the old version is freed when
its last request finishes. A failed load leaves the serving version untouched.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from features.model_folder import SERVING_WEIGHTS, ModelFolderError, check_model_folder
from features.online import FeatureSpace, encode_request
from serving.graph import OUTPUT, graph_inputs
from serving.heap import settle_heap
from serving.metrics import ServiceMetrics
from serving.user_state import IncrementalGraphs, UserState, append_events, encode_profile, score_state

log = logging.getLogger("suan.serving")
Device = Literal["auto", "cpu", "cuda"]


class ModelLoadError(RuntimeError):
    """A serving folder or registry URI that cannot be served; the message says why."""


def execution_providers(device: Device = "auto") -> list[str]:
    """CUDA first when onnxruntime offers it (``auto``), else CPU; ``cuda`` insists on CUDA."""
    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ModelLoadError(f"device 'cuda' requested but onnxruntime offers only {available} "
                             "(install onnxruntime-gpu in place of onnxruntime: see README)")
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int = 1) -> ort.SessionOptions:
    """``threads`` intra-op threads (one request's graph), one inter-op thread, all graph optimisations.

    Idle intra-op threads block instead of spinning: on a small machine shared with the HTTP workers,
    spinning threads burn the cores the next request needs.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


@dataclass(frozen=True)
class LoadedModel:
    """One servable model version.

    Args:
        version: ``models:/name/N`` when it came from the registry, else ``sha256:<12 hex>`` of model.onnx.
        source: the folder or URI it was loaded from.
        space: vocabularies and feature map (the online feature path).
        session: the ONNX Runtime session.
        input_names: graph inputs in ``serving.graph.graph_inputs`` order.
        providers: execution providers the session actually uses.
        incremental: the append-step and score-from-state graphs (stateful path), None without them.
            Default: None.
    """

    version: str
    source: str
    space: FeatureSpace
    session: ort.InferenceSession
    input_names: tuple[str, ...]
    providers: tuple[str, ...]
    incremental: IncrementalGraphs | None = None

    def predict(self, request: dict) -> np.ndarray:
        """Scores [C] of one user's raw request (see ``features.online.encode_request``)."""
        arrays = encode_request(self.space, request)
        scores = self.session.run([OUTPUT], {n: arrays[n] for n in self.input_names})[0]  # [1, C]
        return scores[0]


def _check_folder(folder: Path) -> None:
    """The shared model-folder check (``features.model_folder``), for a serving folder."""
    try:
        check_model_folder(folder, SERVING_WEIGHTS)
    except ModelFolderError as exc:
        hint = " (a run or model folder? export it first: suan export --run RUN --out DIR)" \
            if (folder / "model.pt").exists() or (folder / "model").is_dir() else ""
        raise ModelLoadError(f"{exc}{hint}") from exc


def _warm_up(model: LoadedModel, candidates: int) -> None:
    """Run the graph once at the smallest and at a typical shape; also proves the graph runs."""
    space = model.space
    for n_hist, n_cand in ((0, 1), (space.max_len, max(candidates, 1))):
        request = {"timestamp": 3600 * 24 * 365, "history": [{"ts": t} for t in range(n_hist)],
                   "candidates": [{}] * n_cand}
        scores = model.predict(request)
        if scores.shape != (n_cand,) or not np.isfinite(scores).all():
            raise ModelLoadError(f"{model.source}: warm-up gave scores of shape {scores.shape}, "
                                 f"finite={bool(np.isfinite(scores).all())}")
    if model.incremental is not None:
        empty = UserState(model.version, encode_profile(space, {}), model.incremental.init, 0, 0)
        state = append_events(model.incremental, space, empty, [{"ts": 3600}])
        scores = score_state(model.incremental, space, state, {"timestamp": 7200, "candidates": [{}] * 2})
        if scores.shape != (2,) or not np.isfinite(scores).all():
            raise ModelLoadError(f"{model.source}: warm-up of the incremental graphs gave scores {scores}")


def load_folder(folder: str | Path, *, threads: int = 1, device: Device = "auto", version: str = "",
                source: str = "", warm_candidates: int = 100) -> LoadedModel:
    """Load and warm up a serving folder (``suan export`` output or a registry download).

    Args:
        folder: serving folder with model.onnx, feature_map.json and vocab/.
        threads: ONNX Runtime intra-op threads. Default: 1.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``. Default: auto.
        version: version label ("" = content hash of model.onnx). Default: "".
        source: what to report as the source ("" = the folder). Default: "".
        warm_candidates: candidates in the warm-up call. Default: 100.
    """
    folder = Path(folder)
    _check_folder(folder)
    try:
        space = FeatureSpace.load(folder)
        onnx_bytes = (folder / "model.onnx").read_bytes()
        session = ort.InferenceSession(str(folder / "model.onnx"), session_options(threads),
                                       providers=execution_providers(device))
        incremental = IncrementalGraphs.load(folder, session_options(threads), execution_providers(device))
    except ModelLoadError:
        raise
    except Exception as exc:  # corrupt files of any kind: report, never serve
        raise ModelLoadError(f"{folder}: cannot load ({type(exc).__name__}: {exc})") from exc
    want = [gi.name for gi in graph_inputs(space.fmap)]
    have = [i.name for i in session.get_inputs()]
    if sorted(want) != sorted(have):
        raise ModelLoadError(f"{folder}: model.onnx inputs {have} do not match the feature map's {want}")
    version = version or "sha256:" + hashlib.sha256(onnx_bytes).hexdigest()[:12]
    model = LoadedModel(version, source or str(folder), space, session, tuple(want), tuple(session.get_providers()),
                        incremental)
    _warm_up(model, warm_candidates)
    return model


def _registry_version(uri: str, tracking_uri: str) -> str:
    """``models:/name/N`` for ``models:/name/N`` or ``models:/name@alias`` (the alias resolved)."""
    import mlflow

    name, _, ref = uri.removeprefix("models:/").partition("/")
    if "@" in name:
        name, alias = name.split("@", 1)
        client = mlflow.MlflowClient(tracking_uri=tracking_uri or None)
        return f"models:/{name}/{client.get_model_version_by_alias(name, alias).version}"
    return f"models:/{name}/{ref}" if ref.isdigit() else uri


def load_source(source: str, *, threads: int = 1, device: Device = "auto", tracking_uri: str = "",
                warm_candidates: int = 100) -> LoadedModel:
    """Load a serving folder, or fetch ``models:/...`` into a temporary folder, load it, and delete it."""
    if not source.startswith("models:/"):
        return load_folder(source, threads=threads, device=device, warm_candidates=warm_candidates)
    from serving.registry import fetch

    tmp = Path(tempfile.mkdtemp(prefix="suan-serve-"))
    try:
        version = _registry_version(source, tracking_uri)
        folder = fetch(version, tmp, tracking_uri)
        return load_folder(folder, threads=threads, device=device, version=version, source=source,
                           warm_candidates=warm_candidates)
    except ModelLoadError:
        raise
    except Exception as exc:  # unknown model/alias, unreachable store, incomplete registration
        raise ModelLoadError(f"{source}: cannot fetch from the registry ({type(exc).__name__}: {exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the session and vocabularies are in memory now


def folder_fingerprint(folder: Path) -> tuple | None:
    """What changes when ``suan export`` replaces a serving folder (None while it is incomplete)."""
    try:
        stats = [(folder / f).stat() for f in ("model.onnx", "feature_map.json")]
    except OSError:
        return None
    return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


class ModelStore:
    """The serving model version behind one reference, reloadable while requests run.

    Args:
        source: serving folder or ``models:/name/version`` / ``models:/name@alias``.
        threads: ONNX Runtime intra-op threads. Default: 1.
        device: ``auto``, ``cpu`` or ``cuda``. Default: auto.
        tracking_uri: MLflow tracking URI for ``models:/`` sources. Default: "".
        warm_candidates: candidates in the warm-up call. Default: 100.
        metrics: updated on every (re)load. Default: None.
    """

    def __init__(self, source: str, *, threads: int = 1, device: Device = "auto", tracking_uri: str = "",
                 warm_candidates: int = 100, metrics: ServiceMetrics | None = None) -> None:
        self.source = source
        self.threads, self.device, self.tracking_uri = threads, device, tracking_uri
        self.warm_candidates = warm_candidates
        self.metrics = metrics
        self.error = ""  # why the last load failed ("" after a success)
        self._current: LoadedModel | None = None
        # (source, folder fingerprint taken before reading it) of the serving and of the last failed load
        self._loaded: tuple | None = None
        self._failed: tuple | None = None
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self._stop = threading.Event()

    @property
    def current(self) -> LoadedModel | None:
        """The serving version: read it once per request and use that object throughout."""
        return self._current

    def load(self, source: str = "") -> tuple[LoadedModel, LoadedModel | None]:
        """Load ``source`` (default: the current source) beside the serving version, then swap.

        Returns:
            (new, previous) versions. Raises :class:`ModelLoadError` and keeps serving the old one.
        """
        with self._lock:
            source = source or self.source
            start = time.perf_counter()
            stamp = (source, None if source.startswith("models:/") else folder_fingerprint(Path(source)))
            try:
                new = load_source(source, threads=self.threads, device=self.device,
                                  tracking_uri=self.tracking_uri, warm_candidates=self.warm_candidates)
            except ModelLoadError as exc:
                self.error, self._failed = str(exc), stamp
                if self.metrics:
                    self.metrics.reloads.inc(result="failed")
                raise
            previous, self._current = self._current, new  # the swap: one reference rebinding
            self.source, self.error, self._loaded = source, "", stamp
            if self.metrics:
                self.metrics.reloads.inc(result="ok")
                self.metrics.set_model(new.version)
            log.info("serving %s from %s (loaded in %.2fs, previous %s)", new.version, source,
                     time.perf_counter() - start, previous.version if previous else None)
            settle_heap()  # the new version's objects join the frozen long-lived heap
            return new, previous

    def first_load(self) -> None:
        """The first load; a failure is logged and kept in ``error`` (``/readyz`` answers 503 naming it, and a
        watcher may still load a fixed folder) instead of ending the process."""
        try:
            self.load()
        except ModelLoadError as exc:
            log.error("model not loaded: %s", exc)

    def load_in_background(self) -> threading.Thread:
        """Start :meth:`first_load` without blocking (``/readyz`` answers 503 until it is done)."""
        thread = threading.Thread(target=self.first_load, name="suan-model-load", daemon=True)
        thread.start()
        return thread

    def watch(self, interval: float) -> threading.Thread:
        """Poll a folder source every ``interval`` s; reload when its files differ from the loaded ones."""
        def target() -> None:
            while not self._stop.wait(interval):
                source = self.source
                if source.startswith("models:/"):
                    continue
                now = (source, folder_fingerprint(Path(source)))
                if now[1] is None or now in (self._loaded, self._failed):  # incomplete, current or known bad
                    continue
                try:
                    self.load(source)
                except ModelLoadError as exc:
                    log.error("reload after a change of %s failed, still serving the old version: %s", source, exc)
        thread = threading.Thread(target=target, name="suan-model-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
