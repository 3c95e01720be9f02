"""MLflow model registry: register an exported serving folder, and fetch one back by URI.

The ONNX file is logged with the ``mlflow.onnx`` flavour (signature from ``serving.graph``); the
feature map, vocabularies, model config, ``serving.json`` and the incremental graphs (when exported)
travel as extra files, so ``models:/<name>/<version or @alias>`` holds everything the service needs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from features.schema import FeatureMap
from serving.graph import APPEND_GRAPH, OUTPUT, STATE_INIT, STATE_SCORE_GRAPH, graph_inputs

SERVING_FILES = ("feature_map.json", "serving.json", "model_config.json")
# present only for a model with an incremental form (the stateful path)
INCREMENTAL_FILES = (APPEND_GRAPH, STATE_SCORE_GRAPH, STATE_INIT)


def _signature(fmap: FeatureMap):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(gi.dtype), tuple(-1 for _ in gi.shape), gi.name) for gi in graph_inputs(fmap)])
    outputs = Schema([TensorSpec(np.dtype("float32"), (-1, -1), OUTPUT)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def register(serving_dir: str | Path, name: str, tracking_uri: str, alias: str = "") -> str:
    """Log ``serving_dir`` as an ONNX model and register it as ``name``; returns ``models:/name/version``."""
    import mlflow
    import onnx

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per extra file otherwise
    serving_dir = Path(serving_dir)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("serving")
    fmap = FeatureMap.load(serving_dir / "feature_map.json")
    extra = [str(serving_dir / f) for f in SERVING_FILES] + sorted(str(p) for p in (serving_dir / "vocab").glob("*"))
    extra += [str(serving_dir / f) for f in INCREMENTAL_FILES if (serving_dir / f).exists()]
    with mlflow.start_run(run_name=f"register-{name}"):
        info = mlflow.onnx.log_model(onnx.load(str(serving_dir / "model.onnx")), name="model",
                                     registered_model_name=name, signature=_signature(fmap),
                                     pip_requirements=["onnxruntime"], extra_files=extra,
                                     save_as_external_data=False)
    version = str(info.registered_model_version)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
    return f"models:/{name}/{version}"


def fetch(uri: str, dest: str | Path, tracking_uri: str = "") -> Path:
    """Download a registered model and lay it out as a serving folder (``model.onnx``, ``vocab/``, ...)."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    dest = Path(dest)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest / "download")))
    (dest / "vocab").mkdir(parents=True, exist_ok=True)
    for path in local.rglob("*"):
        if path.name == "model.onnx":
            shutil.copy(path, dest / "model.onnx")
        elif path.name in SERVING_FILES or path.name in INCREMENTAL_FILES:
            shutil.copy(path, dest / path.name)
        elif path.suffix == ".parquet":
            shutil.copy(path, dest / "vocab" / path.name)
    shutil.rmtree(dest / "download", ignore_errors=True)
    missing = [f for f in ("model.onnx", *SERVING_FILES) if not (dest / f).exists()]
    if missing:
        raise FileNotFoundError(f"{uri} lacks {missing}: was it registered by `suan export --register`?")
    return dest
