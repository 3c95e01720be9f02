"""``suan analyze`` end to end on a saved (untrained) run: diagnostics.json, plots, report, calibration."""

from __future__ import annotations

import json

import torch

from features.schema import FeatureMap
from pipelines.analyze import evaluate_calibration
from pipelines.artifacts import save_model_dir
from pipelines.cli import main
from suan.config import ModelConfig
from suan.models.ctr import build_model


def _save_run(tiny_synthetic, run, arch: str, **options) -> None:
    data = tiny_synthetic / "data"
    fmap = FeatureMap.load(data / "feature_map.json")
    cfg = ModelConfig.from_grade(arch, 2, seq_len=16, **options)
    torch.manual_seed(0)
    save_model_dir(run / "model", build_model(cfg, fmap), cfg, data)


def test_analyze_writes_diagnostics_plots_report_and_calibration(tiny_synthetic, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "analysis"
    _save_run(tiny_synthetic, run, "suan", layer_router=True)
    argv = ["analyze", "--run", str(run), "--data", str(tiny_synthetic / "data"), "--out", str(out), "--max-rows", "40",
            "--users", "2", "--batch-size", "16", "--tau", "1.5", "--calibrate", "--sink-beta", "0.5"]
    assert main(argv) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["rows"] == 40 and diag["num_layers"] == 2 and len(diag["users"]) == 2
    assert len(diag["mass_per_position"][0][0]) == 17 and set(diag["sinks"]) == {"primary", "secondary", "early"}
    assert 0 <= diag["router"]["full_fraction"] <= 1 and 0 <= diag["router"]["attention_flops_saved"] < 1
    assert "distance" in diag["without_relative_bias"]
    assert len(diag["calibration"]) == 2
    assert all({"valid_auc", "test_auc"} <= set(m) for m in diag["calibration"].values())
    report = (out / "report.md").read_text()
    for png in ("mass_per_position", "position_bias", "sink_share", "target_attention"):
        assert (out / "plots" / f"{png}.png").stat().st_size > 1000
        assert f"(plots/{png}.png)" in report
    assert "Layer router" in report and "sink calibration" in report


def test_analyze_refuses_a_model_without_attention(tiny_synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    _save_run(tiny_synthetic, run, "dnn")
    assert main(["analyze", "--run", str(run), "--data", str(tiny_synthetic / "data"), "--out", str(tmp_path / "o")]) == 2
    assert "softmax attention" in capsys.readouterr().err


def test_calibration_can_be_evaluated_on_a_share_of_the_rows(tiny_synthetic, tmp_path):
    run = tmp_path / "run"
    _save_run(tiny_synthetic, run, "suan")
    data = tiny_synthetic / "data"
    full = evaluate_calibration(run / "model", data, beta=0.5, tau=1.5, batch_size=16)
    half = evaluate_calibration(run / "model", data, beta=0.5, tau=1.5, batch_size=16, eval_fraction=0.5)
    for split in ("valid", "test"):
        rows = [m[f"{split}_samples"] for m in (*full.values(), *half.values())]
        assert rows[0] == rows[1] and rows[2] == rows[3]  # the same rows with and without calibration
        assert 0.3 * rows[0] < rows[2] < 0.7 * rows[0]
