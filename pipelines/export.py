"""``suan export``: ONNX export of a run's model, the parity gate, and optional MLflow registration."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.args import ExportArgs
from pipelines.onnx_export import export_model_dir
from pipelines.tracking import tracking_uri


def run_export(args: ExportArgs) -> dict:
    result = export_model_dir(Path(args.run) / "model", Path(args.out))
    worst = max(r["max_abs_diff"] for r in result["parity"])
    print(f"exported {args.out}/model.onnx; parity max |ORT - torch| = {worst:.2e} over {len(result['parity'])} batches")
    if args.register:
        from serving.registry import register

        uri, _ = tracking_uri(args.mlflow_uri)
        result["model_uri"] = register(args.out, args.register, uri, args.alias)
        print(f"registered {result['model_uri']}" + (f" (alias @{args.alias})" if args.alias else ""))
    (Path(args.out) / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
