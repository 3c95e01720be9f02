"""``suan analyze``: a trained run's attention → ``diagnostics.json``, PNG plots and ``report.md``.

setup (the run's model and data) → record every layer's attention on ``max_rows`` rows, and again with
the learned relative biases zeroed (the position-bias curves without the bias) → summarise (sinks,
position bias, target attention, layer-router choices) → plots and report → with ``--calibrate``,
valid/test AUC with and without training-free sink calibration.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from pipelines.analysis_report import markdown, write_plots
from pipelines.args import AnalyzeArgs
from pipelines.artifacts import load_model_dir
from pipelines.datamodule import ShardDataModule
from pipelines.evaluate import evaluate
from suan.analysis.diagnostics import router_summary
from suan.analysis.record import record_attention, without_relative_bias
from suan.analysis.stats import AttentionStats
from suan.config import ModelConfig, mixer_spec, softmax_mixers
from suan.models.ctr import build_model
from suan.utils.config import ConfigError


def run_analyze(args: AnalyzeArgs) -> dict:
    run, out = Path(args.run), Path(args.out)
    model, cfg, _ = load_model_dir(run / "model")
    if cfg.arch in ("dnn", "din") or not (mixer_spec(cfg.mixer_name).softmax or cfg.layer_router):
        raise ConfigError(f"{run}: analyze needs softmax attention ({softmax_mixers()}), not {cfg.arch}/{cfg.mixer_name}")
    data = args.data or yaml.safe_load((run / "train_config.yaml").read_text())["data"]
    stats = record(model, cfg, data, args)
    diag = {"run": str(run), "split": args.split, **stats.result()}
    if cfg.position == "relative":
        stripped = record(without_relative_bias(model), cfg, data, args).result()
        diag["without_relative_bias"] = {k: stripped[k] for k in ("distance", "time_bucket", "sinks")}
    if stats.full_counts is not None:
        diag["router"] = router_summary(stats.full_counts, stats.rows, cfg.seq_len,
                                         cfg.mixer_options.window, cfg.mixer_options.dilation)
    if args.calibrate:
        diag["calibration"] = evaluate_calibration(run / "model", data, args.sink_beta, args.tau, args.batch_size,
                                                   args.eval_fraction)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnostics.json").write_text(json.dumps(diag, indent=1) + "\n")
    plots = write_plots(diag, out / "plots")
    (out / "report.md").write_text(markdown(diag, plots, f"{run.name} ({cfg.arch} grade {cfg.grade}, {args.split})"))
    print(f"attention report: {out / 'report.md'}")
    return diag


def record(model, cfg: ModelConfig, data: str | Path, args: AnalyzeArgs) -> AttentionStats:
    """Record the attention of ``model`` on the first ``max_rows`` rows of the split and summarise it."""
    stats = AttentionStats(cfg.num_layers, cfg.num_heads, cfg.seq_len + 1, tau=args.tau, anchors=args.anchors,
                           users=args.users)
    model.eval()
    with torch.no_grad(), record_attention(model) as recording:
        for batch in ShardDataModule(data, batch_size=args.batch_size).stream(args.split):
            keep = args.max_rows - stats.rows
            batch = {k: v[:keep] for k, v in batch.items()}
            model(batch)
            stats.update(recording.pop())
            if stats.rows >= args.max_rows:
                break
    return stats


def evaluate_calibration(model_dir: Path, data: str | Path, beta: float, tau: float,
                         batch_size: int, eval_fraction: float = 1.0) -> dict[str, dict[str, float]]:
    """Valid and test metrics of a saved model without and with sink calibration (same weights).

    Args:
        model_dir: a run's ``model/`` folder.
        data: prepared folder.
        beta: factor on sink attention. tau: sink threshold.
        batch_size: evaluation batch size.
        eval_fraction: nested share of the valid/test rows evaluated (the same rows with and without).

    Returns:
        ``{"off": metrics, "beta=…, tau=…": metrics}`` with ``valid_*`` and ``test_*`` keys.
    """
    model, cfg, fmap = load_model_dir(model_dir)
    calibrated = build_model(cfg.replace(sink_beta=beta, sink_tau=tau), fmap)
    calibrated.load_state_dict(model.state_dict())
    out = {}
    for name, m in (("off", model), (f"beta={beta}, tau={tau}", calibrated.eval())):
        out[name] = {**evaluate(m, data, "valid", batch_size, eval_fraction),
                     **evaluate(m, data, "test", batch_size, eval_fraction)}
    return out
