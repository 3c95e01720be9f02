"""The model folder every run writes and every consumer (eval, export, serving) reads.

``model/``: ``model.pt`` (state dict), ``model_config.json``, ``feature_map.json``, ``vocab/``,
``provenance.json``. No pickled objects: the state dict holds tensors only and is loaded with
``weights_only=True``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from features.schema import FeatureMap
from suan.config import ModelConfig
from suan.models.ctr import CTRModel, build_model
from suan.utils.provenance import provenance


def save_model_dir(path: str | Path, model: CTRModel, cfg: ModelConfig, data_dir: str | Path) -> Path:
    """Write the model folder (replacing an existing one)."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    torch.save(model.state_dict(), path / "model.pt")
    cfg.save(path / "model_config.json")
    shutil.copy(Path(data_dir) / "feature_map.json", path / "feature_map.json")
    shutil.copytree(Path(data_dir) / "vocab", path / "vocab")
    (path / "provenance.json").write_text(json.dumps({**provenance(), "data": str(data_dir)}, indent=2) + "\n")
    return path


def load_model_dir(path: str | Path) -> tuple[CTRModel, ModelConfig, FeatureMap]:
    """Rebuild the model of a model folder (eval mode)."""
    path = Path(path)
    cfg = ModelConfig.load(path / "model_config.json")
    fmap = FeatureMap.load(path / "feature_map.json")
    model = build_model(cfg, fmap)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), cfg, fmap
