"""Export a trained model's candidate-parallel scoring graph to ONNX, behind a parity gate.

The graph takes the inputs of ``serving.graph.graph_inputs`` (dynamic B, L and C) and returns
calibrated pCTR [B, C]. The exported file is checked with onnxruntime against eager PyTorch on
recorded batches (odd lengths, empty history, 1 and many candidates); only a model within the
tolerance is written to the output folder (atomically) and registered. A model built with
``incremental=True`` over an O(1)-state mixer also gets its incremental graphs
(``pipelines.onnx_export_incremental``), behind their own parity gate. Export is a training-side step (torch
in, ONNX out); the scoring service reads what it writes and imports none of it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from features.atomic import atomic_dir
from features.model_folder import SERVING_WEIGHTS, check_model_folder, write_manifest
from features.schema import FeatureMap
from pipelines.artifacts import load_model_dir
from pipelines.onnx_export_incremental import export_incremental, has_incremental_form
from pipelines.onnx_session import PARITY_ATOL, ParityError, session
from serving.graph import APPEND_GRAPH, OUTPUT, STATE_INIT, STATE_SCORE_GRAPH, graph_inputs
from suan.config import ModelConfig
from suan.models.ctr import CTRModel
from suan.utils.provenance import provenance


class ScoringGraph(nn.Module):
    """Positional-tensor wrapper of a CTR model for export: inputs in ``graph_inputs`` order."""

    def __init__(self, model: CTRModel, fmap: FeatureMap) -> None:
        super().__init__()
        self.model = model
        self.names = [i.name for i in graph_inputs(fmap)]

    def forward(self, *tensors: Tensor) -> Tensor:
        batch = dict(zip(self.names, tensors, strict=True))
        return self.model.probabilities(self.model(batch))  # [B, C]


def recorded_batches(fmap: FeatureMap, seq_len: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Parity cases: odd lengths, an empty history, 1 and many candidates, batch sizes 1 and 5."""
    rng = np.random.default_rng(seed)
    cases = []
    for B, L, C in ((1, 1, 1), (5, 7, 1), (5, seq_len, 13), (3, seq_len + 5, 64), (2, 3, 2)):
        batch: dict[str, np.ndarray] = {}
        for gi in graph_inputs(fmap):
            shape = tuple({"B": B, "L": L, "C": C, "F": len(fmap.by_role("dense"))}[d] for d in gi.shape)
            if gi.name == "dense":
                batch[gi.name] = rng.normal(size=shape).astype(np.float32)
            elif gi.name == "hist_len":
                batch[gi.name] = rng.integers(0, L + 1, size=shape).astype(np.int64)
            elif gi.name.endswith("_ts"):
                batch[gi.name] = np.sort(rng.integers(1_600_000_000, 1_700_000_000, size=shape), axis=-1)
            else:
                size = fmap.field(gi.name).vocab_size
                batch[gi.name] = rng.integers(0, size, size=shape).astype(np.int64)
        batch["hist_len"][0] = 0  # an empty history in every case
        batch["target_ts"] = batch["hist_ts"].max(axis=1) + 3600
        cases.append(batch)
    return cases


def export_onnx(model: CTRModel, fmap: FeatureMap, path: Path) -> None:
    """Write ``path`` with the dynamo exporter; B, L and C are dynamic."""
    model = model.eval()
    graph = ScoringGraph(model, fmap)
    example = recorded_batches(fmap, model.cfg.seq_len)[2]
    args = tuple(torch.from_numpy(example[n]) for n in graph.names)
    dims = {"B": torch.export.Dim("B", min=1), "L": torch.export.Dim("L", min=1), "C": torch.export.Dim("C", min=1)}
    dynamic = tuple({k: dims[d] for k, d in enumerate(gi.shape) if d in dims} for gi in graph_inputs(fmap))
    # the exporter logs a warning per missing torchvision op: noise for a model that uses none
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, args, dynamo=True, dynamic_shapes=(dynamic,), input_names=graph.names,
                                    output_names=[OUTPUT], optimize=True, verbose=False)
    program.save(str(path))


def parity(model: CTRModel, fmap: FeatureMap, path: Path) -> list[dict]:
    """Max |ORT - torch| per recorded batch; raises :class:`ParityError` beyond ``PARITY_ATOL``."""
    sess = session(path)
    graph = ScoringGraph(model.eval(), fmap)
    report = []
    for batch in recorded_batches(fmap, model.cfg.seq_len):
        with torch.no_grad():
            want = graph(*(torch.from_numpy(batch[n]) for n in graph.names)).numpy()
        got = sess.run([OUTPUT], {n: batch[n] for n in graph.names})[0]
        diff = float(np.abs(got - want).max())
        report.append({"shape": list(want.shape), "max_abs_diff": diff})
        if not diff <= PARITY_ATOL:
            raise ParityError(f"onnxruntime differs from PyTorch by {diff:.3g} > {PARITY_ATOL} on shape {want.shape}")
    return report


def export_model_dir(model_dir: Path, out: Path) -> dict:
    """Export a model folder (``suan train`` output ``model/``) to a serving folder, gated by parity."""
    model, cfg, fmap = load_model_dir(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, fmap, onnx_path)
        report = parity(model, fmap, onnx_path)  # raises before anything is written
        # an incremental model over an O(1) state also gets its append-step and score-from-state graphs
        incremental = export_incremental(model, fmap, Path(tmp)) if has_incremental_form(model) else None
        with atomic_dir(out) as stage:
            shutil.copy(onnx_path, stage / "model.onnx")
            for name in (APPEND_GRAPH, STATE_SCORE_GRAPH, STATE_INIT) if incremental is not None else ():
                shutil.copy(Path(tmp) / name, stage / name)
            _write_serving_files(stage, model_dir, cfg, fmap, report, incremental)
    return {"parity": report, "incremental_parity": incremental, "out": str(out)}


def _write_serving_files(stage: Path, model_dir: Path, cfg: ModelConfig, fmap: FeatureMap, report: list,
                         incremental: list | None = None) -> None:
    shutil.copy(model_dir / "feature_map.json", stage / "feature_map.json")
    shutil.copytree(model_dir / "vocab", stage / "vocab")
    cfg.save(stage / "model_config.json")
    meta = {"inputs": [gi.__dict__ for gi in graph_inputs(fmap)], "output": OUTPUT, "seq_len": cfg.seq_len,
            "arch": cfg.arch, "grade": cfg.grade, "parity": report, "parity_atol": PARITY_ATOL,
            "incremental_parity": incremental, "feature_map_hash": fmap.hash, **provenance()}
    (stage / "serving.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_manifest(stage)
    check_model_folder(stage, SERVING_WEIGHTS)  # what serving and the registry will demand
