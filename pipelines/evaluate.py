"""``suan eval``: exact AUC, GAUC and logloss of a run's saved model on a split."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from pipelines.args import EvalArgs
from pipelines.artifacts import load_model_dir
from pipelines.datamodule import ShardDataModule
from suan.recipe.evaluation import EvalBuffer


def evaluate(model, data_dir: str | Path, split: str, batch_size: int, eval_fraction: float = 1.0) -> dict[str, float]:
    """Metrics of ``model`` on a split of a prepared folder (on a nested share of its rows if ``eval_fraction`` < 1)."""
    buf = EvalBuffer()
    with torch.no_grad():
        for batch in ShardDataModule(data_dir, batch_size=batch_size, eval_fraction=eval_fraction).stream(split):
            buf.add(batch["user_key"], batch["label"], torch.sigmoid(model(batch)))
    return {f"{split}_{k}": v for k, v in buf.compute().items()}


def run_eval(args: EvalArgs) -> dict:
    run = Path(args.run)
    model, _, _ = load_model_dir(run / "model")
    data = args.data or yaml.safe_load((run / "train_config.yaml").read_text())["data"]
    metrics = evaluate(model, data, args.split, args.batch_size)
    print(json.dumps(metrics, indent=2))
    return metrics
