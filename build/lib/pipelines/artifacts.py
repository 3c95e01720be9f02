"""The model folder every run writes and every consumer (eval, export, serving) reads.

``model/``: ``model.pt`` (state dict), ``model_config.json``, ``feature_map.json``, ``vocab/``,
``provenance.json``. No pickled objects: the state dict holds tensors only and is loaded with
``weights_only=True``.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import torch

from features.atomic import atomic_dir
from features.model_folder import check_model_folder, write_manifest
from features.schema import FeatureMap
from suan.config import ModelConfig
from suan.models.ctr import CTRModel, build_model
from suan.utils.provenance import provenance


def save_model_dir(path: str | Path, model: CTRModel, cfg: ModelConfig, data_dir: str | Path) -> Path:
    """Write the model folder completely or not at all (built beside ``path``, checked, then renamed)."""
    path = Path(path)
    with atomic_dir(path) as stage:
        save_tensors(model.state_dict(), stage / "model.pt")
        cfg.save(stage / "model_config.json")
        shutil.copy(Path(data_dir) / "feature_map.json", stage / "feature_map.json")
        shutil.copytree(Path(data_dir) / "vocab", stage / "vocab")
        (stage / "provenance.json").write_text(json.dumps({**provenance(), "data": str(data_dir)}, indent=2) + "\n")
        write_manifest(stage)
        check_model_folder(stage)
    return path


def save_tensors(obj, path: Path) -> None:
    """``torch.save`` whose failure is an ``OSError`` naming the file (torch reports a full disk as
    ``RuntimeError: ... unexpected pos ...``)."""
    try:
        torch.save(obj, path)
    except RuntimeError as exc:
        raise OSError(errno.EIO, f"writing failed ({exc}); is the disk full?", str(path)) from exc


def load_model_dir(path: str | Path) -> tuple[CTRModel, ModelConfig, FeatureMap]:
    """Rebuild the model of a model folder (eval mode), after :func:`check_model_folder`."""
    path = Path(path)
    fmap = check_model_folder(path)
    cfg = ModelConfig.load(path / "model_config.json")
    model = build_model(cfg, fmap)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), cfg, fmap
