"""``suan scale sweep``: grades x data fractions x seeds, each point trained by the normal pipeline.

Resumable: finished points are skipped, a failed point is recorded with its error and the sweep
goes on; ``manifest.json`` is rewritten atomically after every point. All runs log to one MLflow
experiment (the sweep folder's name) with grade / fraction / seed as parameters and tags.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from pipelines.args import SweepArgs, TrainArgs
from pipelines.train import run_train
from scaling.manifest import load_manifest, point_name, save_manifest


def run_sweep(args: SweepArgs) -> dict:
    """Train every missing point of the grid; returns the manifest."""
    sweep = Path(args.out)
    sweep.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(sweep)
    manifest["config"] = args.to_dict()
    uri = args.mlflow_uri or f"sqlite:///{(sweep / 'mlflow' / 'mlflow.db').resolve()}"
    grid = [(g, f, s) for g in args.grades for f in args.data_fractions for s in args.seeds]
    for k, (grade, fraction, seed) in enumerate(grid, start=1):
        name = point_name(grade, fraction, seed)
        if manifest["points"].get(name, {}).get("status") == "done":
            continue
        run = sweep / "runs" / name
        train = TrainArgs(data=args.data, out=str(run), model=args.model, grade=grade, seed=seed,
                          data_fraction=fraction, max_epochs=args.max_epochs, batch_size=args.batch_size,
                          lr=args.lr, patience=args.patience, eval_fraction=args.eval_fraction,
                          bucket_by_length=args.bucket_by_length, mlflow_uri=uri, experiment=f"sweep-{sweep.name}",
                          progress=False, resume=(run / "checkpoints" / "last.ckpt").exists())
        start = time.perf_counter()
        entry = {"grade": grade, "fraction": fraction, "seed": seed, "run": str(run)}
        try:
            entry.update(status="done", metrics=run_train(train))
        except Exception as exc:  # noqa: BLE001 - a failed point is recorded, the sweep goes on
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        entry["wall_s"] = time.perf_counter() - start
        manifest["points"][name] = entry
        save_manifest(sweep, manifest)
        status = entry["status"]
        auc = entry.get("metrics", {}).get("test_auc", float("nan"))
        print(f"[{k}/{len(grid)}] {name}: {status} test AUC {auc:.4f} ({entry['wall_s']:.0f} s)", flush=True)
    return manifest
