"""One check of a model folder, used by every consumer: eval, export, the parity gate, registration, serving.

A folder is complete when it has its weights (``model.pt`` for a training model folder,
``model.onnx`` for a serving folder), ``model_config.json``, ``feature_map.json`` and one vocabulary
file per vocabulary the feature map names, and every file listed in its ``files.json`` still has the
recorded sha256 (a truncated or swapped file is caught before it is loaded, let alone published).
Torch-free, so the serving process uses it as it is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from features.schema import FeatureMap

MANIFEST = "files.json"
TRAINING_WEIGHTS, SERVING_WEIGHTS = "model.pt", "model.onnx"


class ModelFolderError(ValueError):
    """A model folder is missing a file or holds a file that changed since it was written."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | Path) -> dict[str, str]:
    """Record the sha256 of every file under ``folder`` (except the manifest) in ``files.json``."""
    folder = Path(folder)
    files = {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
    return files


def check_model_folder(folder: str | Path, weights: str = TRAINING_WEIGHTS) -> FeatureMap:
    """Raise :class:`ModelFolderError` unless ``folder`` is complete and unchanged; return its feature map.

    Args:
        folder: a model folder (``suan train``'s ``model/``) or a serving folder (``suan export --out``).
        weights: the weights file it must hold: ``model.pt`` or ``model.onnx``. Default: model.pt.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder} does not exist")
    missing = [name for name in (weights, "model_config.json", "feature_map.json") if not (folder / name).is_file()]
    if "feature_map.json" not in missing:
        try:
            fmap = FeatureMap.load(folder / "feature_map.json")
        except (ValueError, OSError) as exc:
            raise ModelFolderError(f"{folder}: feature_map.json cannot be read ({exc})") from exc
        missing += [f"vocab/{name}.parquet" for name in sorted(fmap.vocab_sizes())
                    if not (folder / "vocab" / f"{name}.parquet").is_file()]
    if missing:
        raise ModelFolderError(f"{folder} is incomplete: missing {missing}")
    manifest = folder / MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        changed = [name for name, digest in sorted(recorded.items())
                   if not (folder / name).is_file() or sha256(folder / name) != digest]
        if changed:
            raise ModelFolderError(f"{folder}: {changed} changed or vanished since the folder was written "
                                   f"(sha256 in {MANIFEST}); re-run the step that wrote it")
    return fmap
