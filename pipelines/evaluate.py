"""``suan eval``: exact AUC, GAUC and logloss of a run's saved model on a split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from pipelines.args import EvalArgs
from pipelines.artifacts import load_model_dir
from pipelines.datamodule import ShardDataModule
from suan.recipe.evaluation import EvalBuffer
from suan.utils.metrics import auc

# history-length buckets (behaviours read, inclusive upper ends): where sequence models and pooling differ
LENGTH_EDGES = (0, 2, 5, 10, 20, 50)


def evaluate(model, data_dir: str | Path, split: str, batch_size: int, eval_fraction: float = 1.0) -> dict[str, float]:
    """Metrics of ``model`` on a split of a prepared folder (on a nested share of its rows if ``eval_fraction`` < 1)."""
    buf = EvalBuffer()
    for batch, probs in predictions(model, data_dir, split, batch_size, eval_fraction):
        buf.add(batch["user_key"], batch["label"], probs)
    return {f"{split}_{k}": v for k, v in buf.compute().items()}


def predictions(model, data_dir: str | Path, split: str, batch_size: int, eval_fraction: float = 1.0):
    """``(batch, click probabilities)`` over a split (a nested share of its rows if ``eval_fraction`` < 1)."""
    with torch.no_grad():
        for batch in ShardDataModule(data_dir, batch_size=batch_size, eval_fraction=eval_fraction).stream(split):
            yield batch, torch.sigmoid(model(batch))


def auc_by_history_length(model, data_dir: str | Path, split: str, batch_size: int = 4096,
                          edges: tuple[int, ...] = LENGTH_EDGES, eval_fraction: float = 1.0) -> list[dict]:
    """AUC of ``model`` on a split per history-length bucket: ``[{"lo", "hi", "rows", "auc"}, ...]``, buckets
    ``[0, 0], [1, 2], [3, 5], ...`` and a last open one; empty buckets left out (their rows sum to the split's)."""
    lengths, labels, scores = [], [], []
    for batch, probs in predictions(model, data_dir, split, batch_size, eval_fraction):
        scores.append(probs.flatten().numpy())
        labels.append(batch["label"].flatten().numpy())
        lengths.append(batch["hist_len"].numpy())
    n, y, p = (np.concatenate(a) for a in (lengths, labels, scores))
    rows, lo = [], 0
    for hi in (*edges, None):
        keep = (n >= lo) & (n <= hi) if hi is not None else n >= lo
        if keep.any():
            rows.append({"lo": lo, "hi": hi, "rows": int(keep.sum()), "auc": auc(y[keep], p[keep])})
        lo = (hi if hi is not None else lo) + 1
    return rows


def run_eval(args: EvalArgs) -> dict:
    run = Path(args.run)
    model, _, _ = load_model_dir(run / "model")
    data = args.data or yaml.safe_load((run / "train_config.yaml").read_text())["data"]
    metrics = evaluate(model, data, args.split, args.batch_size)
    print(json.dumps(metrics, indent=2))
    return metrics
