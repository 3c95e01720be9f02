"""``suan demo``: the main job end to end on the embedded synthetic default.

Stages: generate the synthetic log and prepare it under the time-split protocol; train SUAN and
baselines with the same data path and loop and compare them with the oracle (Bayes) AUC; an attention
analysis of the trained SUAN (sinks, position bias, candidate attention: ``suan analyze``); a mini
scaling sweep (grades x data fractions) with its power-law fit and plot; distillation of the compared
SUAN (offline, the default) or of a SUAN one grade up trained alongside (online) into a LightSUAN; ONNX
export of the student (parity-gated, registered in the MLflow model registry), then the real scoring
service on 127.0.0.1 scores a sample request and stops. Every run is tracked in an MLflow store under
the demo folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from features.prepare import prepare
from features.protocols import PROTOCOLS
from features.sources.synthetic import generate, load_synthetic
from features.stats import describe
from pipelines.args import DemoArgs
from suan.utils.metrics import auc_standard_error


def run_demo(args: DemoArgs) -> dict:
    out = Path(args.out)
    print(f"[1/6] generating synthetic events → {out / 'synthetic'}")
    summary = generate(args.synth_config(), out / "synthetic")
    print(f"      {summary['events']:,} events, {summary['users']:,} users, click rate {summary['click_rate']:.3f}")
    print(f"[2/6] preparing (time-split, L={args.max_seq_len}) → {out / 'data'}")
    proto = PROTOCOLS["time-split"].replace(max_seq_len=args.max_seq_len)
    stats = prepare(load_synthetic(out / "synthetic"), proto, out / "data")
    print(describe(out / "data"))
    _show_batch(out / "data")
    print(f"[3/6] training {', '.join(args.models)} at grade {args.grade} for {args.epochs} epoch(s)")
    results = _train_all(args, out)
    popularity = _popularity(out / "data")
    print(_comparison(results, stats["splits"]["test"].get("oracle_auc"), popularity, stats["splits"]["test"]))
    outcome = {"data": stats, "models": results, "popularity": popularity}
    if "suan" in results:
        outcome["attention"] = _analyze(out)
    if args.sweep_grades:
        size = f"grades {list(args.sweep_grades)} on all the data (size law), " if len(args.sweep_grades) > 1 else ""
        print(f"[4/6] mini scaling sweep: {size}grade {args.grade} on fractions {list(args.sweep_fractions)} (data law)")
        outcome["scaling"] = _mini_sweep(args, out, results.get("suan"))
    if args.distill:
        print(f"[5/6] {args.distill_mode} distillation: SUAN teacher → LightSUAN student")
        outcome["distill"] = _distill(args, out)
        print("[6/6] export the student to ONNX, register it, serve it on 127.0.0.1 and score a request")
        outcome["serving"] = _export_and_serve(out)
    return outcome


def _export_and_serve(out: Path) -> dict:
    from pipelines.args import ExportArgs
    from pipelines.export import run_export
    from pipelines.serve_client import sample_request, serve_and_score

    export = run_export(ExportArgs(run=str(out / "distill"), out=str(out / "serving"), register="suan-demo",
                                   alias="champion", mlflow_uri=_mlflow_uri(out)))
    request = sample_request(out / "synthetic", n_history=20, n_candidates=5)
    scores = serve_and_score(export["model_uri"], request, mlflow_uri=_mlflow_uri(out))
    for cand, score in zip(request["candidates"], scores["scores"], strict=True):
        print(f"      item {cand['item_id']:>5} (category {cand['cate_id']:>2}): pCTR {score:.4f}")
    print(f"      served {scores['model_version']}; service stopped")
    return {"export": export, "response": scores}


def _analyze(out: Path) -> dict:
    from pipelines.analyze import run_analyze
    from pipelines.args import AnalyzeArgs

    suan = _run_dir(out, "suan")
    diag = run_analyze(AnalyzeArgs(run=str(suan), out=str(suan / "analysis"), max_rows=256, users=3))
    primary, secondary = (diag["sinks"][k]["per_row"] for k in ("primary", "secondary"))
    print(f"      SUAN attention: {primary:.2f} primary and {secondary:.2f} secondary sinks per row; plots of the mass "
          "per position, position bias, sink share and candidate attention are in the report")
    return diag


def _mlflow_uri(out: Path) -> str:
    return f"sqlite:///{(out / 'mlflow' / 'mlflow.db').resolve()}"


def _mini_sweep(args: DemoArgs, out: Path, suan: dict | None) -> dict:
    import shutil

    from pipelines.args import SweepArgs, TrainArgs
    from pipelines.mfu import matmul_peak
    from pipelines.sweep import mark_done, point_entry, run_sweep, selected_alike
    from scaling.manifest import entry_name, save_manifest
    from scaling.report import fit_sweep

    sweep = out / "sweep"
    shutil.rmtree(sweep, ignore_errors=True)
    sweep.mkdir(parents=True)
    # L-shaped: the size axis at all the data, the data axis at the demo's grade (they share its full-data point)
    sweep_args = SweepArgs(data=str(out / "data"), out=str(sweep), grades=args.sweep_grades, seeds=(args.seed,),
                           data_fractions=(1.0,), max_epochs=args.epochs, batch_size=args.batch_size,
                           lr=args.sweep_lr, schedule=args.sweep_schedule, mlflow_uri=_mlflow_uri(out))
    data_axis = sweep_args.replace(grades=(args.grade,), data_fractions=args.sweep_fractions)
    trained = _run_dir(out, "suan")
    ran = TrainArgs.load(trained / "train_config.yaml") if suan is not None else None
    if (ran is not None and (args.grade in args.sweep_grades or 1.0 in args.sweep_fractions)
            and (ran.lr, ran.schedule) == (sweep_args.lr, sweep_args.schedule)  # a point of the sweep's recipe
            and selected_alike(json.loads((trained / "curve.json").read_text()), ran.select_on,
                               sweep_args.select_on)):
        # the full-data point at the demo's grade is the SUAN run of stage 3 (same data, grade, epochs, seed,
        # recipe; selected on its own metric, but its curve shows it ran as the sweep's selection would):
        # recorded from it instead of trained twice
        peak = matmul_peak()
        entry = mark_done(point_entry(args.grade, 1.0, args.seed, trained), suan, peak)
        entry["wall_s"] = suan["wall_s"]
        save_manifest(sweep, {"points": {entry_name(entry): entry}, "peak_flops": peak})
    run_sweep(sweep_args)
    run_sweep(data_axis)  # its full-data point is done by now when the demo's grade is on the size axis
    result = fit_sweep(sweep, n_bootstrap=100)
    for name, fit in result["per_axis"].items():
        if "coefficients" in fit or "have 1 values" not in fit.get("skipped", ""):  # axes the sweep varied
            print(f"      {_fit_line(name, fit)}")
    print(f"      plots: {sweep / 'plots'} (sweep_logloss.png shows every point); report: {sweep / 'report.md'}")
    return result


def _fit_line(name: str, fit: dict) -> str:
    """One line per law: its exponent with the bootstrap interval, where the axis bends, or why it was not fitted."""
    metric, _, axis = name.partition("_vs_")
    label = f"test {metric} vs {axis.replace('_', ' ')}"
    if "coefficients" in fit:
        lo, hi = fit["ci"]["alpha"]
        law = f"alpha = {fit['coefficients']['alpha']:.3f} (95% CI {lo:.3f} … {hi:.3f}), R² = {fit['r2']:.3f}"
        return f"{label}: {law}" + ("" if fit["r2"] >= 0.8 else "  (a poor fit: not a law at these points)")
    if fit.get("bend"):
        return f"{label}: bends at {fit['bend']['best_x']:,.0f} (best {fit['bend']['best']:.4f}); not fitted past it"
    return f"{label}: not fitted: {fit.get('why', fit.get('skipped'))}"


def _distill(args: DemoArgs, out: Path) -> dict:
    import shutil

    from pipelines.args import DistillArgs
    from pipelines.distill import run_distill

    run = out / "distill"
    shutil.rmtree(run, ignore_errors=True)
    # offline: the comparison's SUAN run is the teacher (frozen; the costliest model is not trained again)
    offline = args.distill_mode == "offline"
    teacher_grade = args.grade if offline else args.grade + 1
    metrics = run_distill(DistillArgs(data=str(out / "data"), out=str(run), mode=args.distill_mode,
                                      teacher_run=str(_run_dir(out, "suan")) if offline else "",
                                      teacher_grade=teacher_grade, student_grade=args.grade,
                                      max_epochs=args.distill_epochs, seed=args.seed, batch_size=args.batch_size,
                                      progress=False, mlflow_uri=_mlflow_uri(out), experiment="demo"))
    print(f"      student LightSUAN g{args.grade}: test AUC {metrics['test_auc']:.4f}   "
          f"teacher SUAN g{teacher_grade}: test AUC {metrics['test_teacher_auc']:.4f}   student model: {run / 'model'}")
    return metrics


def _run_dir(out: Path, arch: str) -> Path:
    """The comparison's run folder of ``arch`` (stage 3), which the analysis, sweep and distillation reuse."""
    return out / "runs" / arch


def _train_all(args: DemoArgs, out: Path) -> dict[str, dict]:
    import shutil

    from pipelines.args import TrainArgs
    from pipelines.train import run_train

    shutil.rmtree(out / "runs", ignore_errors=True)
    results = {}
    for arch in args.models:
        train = TrainArgs(data=str(out / "data"), out=str(_run_dir(out, arch)), model=arch, grade=args.grade,
                          max_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, progress=False,
                          mlflow_uri=_mlflow_uri(out), experiment="demo")
        start = time.perf_counter()
        results[arch] = {**run_train(train), "wall_s": time.perf_counter() - start}
        print(f"      {arch:<5} test AUC {results[arch]['test_auc']:.4f}")
    return results


def _popularity(data: Path) -> dict[str, float]:
    """The floor every model must clear: candidates ranked by their training clicks."""
    from features.stats import popularity_auc

    return {split: popularity_auc(data, split) for split in ("valid", "test")}


def _comparison(results: dict[str, dict], oracle: float | None, popularity: dict[str, float] | None = None,
                test: dict | None = None) -> str:
    """The models by test AUC, each with its difference to SUAN on the same seed and data order (paired),
    between the popularity-ranking floor and the oracle ceiling, and how precise one test AUC is on this
    many rows (``test``: the split's stats)."""
    ref = results.get("suan", {}).get("test_auc")
    lines = [f"{'model':<6} {'dense params':>12} {'valid AUC':>9} {'test AUC':>9} {'Δ vs suan':>9} {'test GAUC':>9} "
             f"{'logloss':>8} {'epochs':>6} {'samples/s':>9}"]
    for arch, m in sorted(results.items(), key=lambda kv: -kv[1]["test_auc"]):
        delta = f"{m['test_auc'] - ref:>+9.4f}" if ref is not None and arch != "suan" else f"{'':>9}"
        lines.append(f"{arch:<6} {m['params_dense']:>12,} {m['valid_auc']:>9.4f} {m['test_auc']:>9.4f} {delta} "
                     f"{m['test_gauc']:>9.4f} {m['test_logloss']:>8.4f} {m['epochs']:>6} "
                     f"{m['samples_per_second']:>9.0f}")
    if popularity is not None:
        lines.append(f"{'popul.':<6} {'':>12} {popularity['valid']:>9.4f} {popularity['test']:>9.4f}   "
                     "(ranking candidates by their training clicks: the floor)")
    if oracle is not None:
        lines.append(f"{'oracle':<6} {'':>12} {'':>9} {oracle:>9.4f}   (AUC of the planted click probabilities)")
    if test is not None and ref is not None:
        n_pos = round(test["rows"] * test["positive_rate"])
        half = 1.96 * auc_standard_error(ref, n_pos, test["rows"] - n_pos)
        lines.append(f"one test AUC on {test['rows']:,} rows is ± {half:.4f} (95 %, Hanley-McNeil): models closer "
                     "than that are not ranked by one run; valid AUC is what chose every checkpoint")
    return "\n".join(lines)


def _show_batch(data_dir: Path) -> None:
    from pipelines.datamodule import ShardDataModule

    batch = next(iter(ShardDataModule(data_dir, batch_size=4).train_dataloader()))
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in batch.items())
    print(f"one training batch: {shapes}")
