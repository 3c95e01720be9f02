"""``suan compare``: the same data path and loop for every architecture, seeds aggregated.

Runs that already finished (``metrics.json`` present) are reused, so an interrupted comparison
continues where it stopped; ``--no-train`` tabulates the finished runs only (runs still training elsewhere are
named and left out).

Besides mean ± sd over seeds, every model gets its difference to the first model paired by seed
(same seed = same initialisation stream and data order). Much of the seed-to-seed spread is shared by
all models, so the paired difference resolves gaps that the unpaired sds hide.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from pipelines.args import CompareArgs, TrainArgs, parse_variant
from pipelines.train import run_train
from suan.utils.config import ConfigError

COLUMNS = ("test_auc", "test_gauc", "test_logloss", "valid_auc")


def run_compare(args: CompareArgs) -> dict:
    out = Path(args.out)
    uri = args.mlflow_uri or f"sqlite:///{(out / 'mlflow' / 'mlflow.db').resolve()}"
    results: dict[str, dict[int, dict]] = {}
    missing = []
    for spec in args.models:
        arch, options = parse_variant(spec)
        for seed in args.seeds:
            run = out / "runs" / f"{run_name(spec)}-g{args.grade}-s{seed}"
            if (run / "metrics.json").exists():
                metrics = json.loads((run / "metrics.json").read_text())
            elif not args.train:
                missing.append(f"{spec} seed {seed}")
                continue
            else:
                base = dict(data=args.data, out=str(run), model=arch, grade=args.grade, seed=seed,
                            max_epochs=args.max_epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                            negative_sampling_rate=args.negative_sampling_rate, data_fraction=args.data_fraction,
                            eval_fraction=args.eval_fraction, mlflow_uri=uri, experiment="compare",
                            progress=False, resume=(run / "checkpoints" / "last.ckpt").exists())
                metrics = run_train(TrainArgs(**{**base, **options}))  # a variant's own value wins
            results.setdefault(spec, {})[seed] = metrics
            print(f"{spec} seed {seed}: test AUC {metrics['test_auc']:.4f}", flush=True)
    if not results:
        raise ConfigError(f"{out} holds no finished run of {list(args.models)} x seeds {list(args.seeds)} "
                          "(--no-train tabulates finished runs only)")
    summary = summarise(results, baseline=args.models[0])
    (out / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    lengths = by_history_length(out, args)
    (out / "by_history_length.json").write_text(json.dumps(lengths, indent=2) + "\n")
    text = table(summary, args) + (f"\n\nnot finished, left out (--no-train): {', '.join(missing)}" if missing else "")
    (out / "comparison.md").write_text(text + "\n\n" + length_table(lengths, args) + "\n")
    plot_curves(out, args)
    print(text)
    return summary


def epochs_below(out: Path, args: CompareArgs, floor: float) -> list[dict]:
    """Every (model, seed, epoch) whose valid AUC is below ``floor`` (popularity ranking): a model that
    trails counting clicks at any epoch is starting or training badly, whatever its best epoch says."""
    found = []
    for spec in args.models:
        for seed in args.seeds:
            path = out / "runs" / f"{run_name(spec)}-g{args.grade}-s{seed}" / "curve.json"
            if path.exists():
                found += [{"model": spec, "seed": seed, "epoch": e["epoch"], "valid_auc": e["valid_auc"]}
                          for e in json.loads(path.read_text()) if e["valid_auc"] < floor]
    return found


def floor_note(below: list[dict], args: CompareArgs, runs: int | None = None) -> str:
    """One line: no epoch of any run below popularity ranking on valid, or which ones were (``runs``: how many
    were looked at; None = the whole grid)."""
    runs = len(args.models) * len(args.seeds) if runs is None else runs
    if not below:
        return f"valid AUC above popularity ranking at every epoch of all {runs} runs"
    where = "; ".join(f"{b['model']} seed {b['seed']} epoch {b['epoch']}: {b['valid_auc']:.4f}" for b in below)
    return f"**valid AUC below popularity ranking** at {len(below)} epoch(s): {where}"


def by_history_length(out: Path, args: CompareArgs) -> dict[str, list[dict]]:
    """Per model, valid AUC per history-length bucket of its first seed's best model: where a sequence
    model and a pooling one part ways (on P-AZ the whole gap to the DNN sat in 3-5-behaviour rows)."""
    from pipelines.artifacts import load_model_dir
    from pipelines.evaluate import auc_by_history_length

    found = {}
    for spec in args.models:
        model_dir = out / "runs" / f"{run_name(spec)}-g{args.grade}-s{args.seeds[0]}" / "model"
        if model_dir.exists():
            model, _, _ = load_model_dir(model_dir)
            found[spec] = auc_by_history_length(model.eval(), args.data, "valid", eval_fraction=args.eval_fraction)
    return found


def length_table(lengths: dict[str, list[dict]], args: CompareArgs) -> str:
    """Markdown: valid AUC per history-length bucket (rows) and model (columns)."""
    if not lengths:
        return ""
    specs = list(lengths)
    buckets = {(b["lo"], b["hi"]): b["rows"] for rows in lengths.values() for b in rows}
    lines = [f"valid AUC by behaviours read (seed {args.seeds[0]}; the best checkpoint of each model)", "",
             "| behaviours | rows | " + " | ".join(specs) + " |", "|---|---:|" + "---:|" * len(specs)]
    for (lo, hi), rows in sorted(buckets.items()):
        cells = []
        for spec in specs:
            value = next((b["auc"] for b in lengths[spec] if (b["lo"], b["hi"]) == (lo, hi)), float("nan"))
            cells.append(f"{value:.4f}")
        label = f"{lo}" if hi == lo else (f"{lo}–{hi}" if hi is not None else f"{lo}+")
        lines.append(f"| {label} | {rows:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(out: Path, args: CompareArgs) -> Path | None:
    """``curves.png``: every run's valid AUC per epoch (one colour per model), popularity ranking as the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from features.stats import popularity_auc

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for k, spec in enumerate(args.models):
        for i, seed in enumerate(args.seeds):
            path = out / "runs" / f"{run_name(spec)}-g{args.grade}-s{seed}" / "curve.json"
            if not path.exists():
                continue
            curve = json.loads(path.read_text())
            ax.plot([e["epoch"] + 1 for e in curve], [e["valid_auc"] for e in curve], color=f"C{k % 10}",
                    marker="o", markersize=3, alpha=0.8, label=spec if i == 0 else None)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(popularity_auc(args.data, "valid"), color="grey", linestyle="--", label="popularity ranking")
    ax.set(xlabel="epoch", ylabel="valid AUC", title=f"{Path(args.data).name}: valid AUC per epoch, grade {args.grade}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)
    return out / "curves.png"


def run_name(spec: str) -> str:
    """A folder name for a model spec: ``suan:ablate=fixed:0`` → ``suan-ablate-fixed-0``."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", spec).strip("-")


def summarise(results: dict[str, dict[int, dict]], baseline: str = "") -> dict:
    """Per model: mean and sample sd of each metric over seeds, plus sizes.

    Args:
        results: model spec → seed → that run's metrics.
        baseline: a spec of ``results``; every other model also gets ``delta_test_auc``, its test AUC
            minus the baseline's at the same seed, over the seeds both have (mean and sd; ``paired_seeds``
            says how many). "" = none.
    """
    out = {}
    for arch, by_seed in results.items():
        runs = list(by_seed.values())
        row = {"seeds": len(runs), "params_dense": runs[0]["params_dense"], "flops_per_sample": runs[0]["flops_per_sample"],
               "samples_per_second": float(np.mean([r.get("samples_per_second", np.nan) for r in runs]))}
        for key in COLUMNS:
            row[key] = mean_sd([r[key] for r in runs])
        shared = sorted(set(by_seed) & set(results.get(baseline, {})))
        if arch != baseline and shared:
            row["delta_test_auc"] = mean_sd([by_seed[s]["test_auc"] - results[baseline][s]["test_auc"] for s in shared])
            row["paired_seeds"] = len(shared)
        out[arch] = row
    return out


def mean_sd(values: list[float]) -> dict:
    """Mean and sample sd (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def fmt(stat: dict, seeds: int, sign: str = "") -> str:
    """``0.7305 ± 0.0109``; one seed has no spread, and a "± 0.0000" would read as a measured one."""
    return f"{stat['mean']:{sign}.4f}" + (f" ± {stat['sd']:.4f}" if seeds > 1 else "")


def table(summary: dict, args: CompareArgs) -> str:
    shares = "" if args.data_fraction == args.eval_fraction == 1 else \
        f"  train rows × {args.data_fraction:g}  eval rows × {args.eval_fraction:g}"
    lines = [f"data: {args.data}  grade {args.grade}  seeds {list(args.seeds)}  epochs ≤ {args.max_epochs}{shares}", "",
             f"| model | dense params | test AUC | Δ test AUC vs {args.models[0]}, paired by seed | test GAUC | "
             "test logloss | valid AUC | train samples/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for arch, row in sorted(summary.items(), key=lambda kv: -kv[1]["test_auc"]["mean"]):
        n = row["seeds"]
        delta = fmt(row["delta_test_auc"], row["paired_seeds"], "+") if "delta_test_auc" in row else ""
        if "delta_test_auc" in row and row["paired_seeds"] < n:
            delta += f" ({row['paired_seeds']} seeds)"
        cells = " | ".join(fmt(row[k], n) for k in COLUMNS[1:3] + ("valid_auc",))
        lines.append(f"| {arch} | {row['params_dense']:,} | {fmt(row['test_auc'], n)} | {delta} | {cells} | "
                     f"{row['samples_per_second']:,.0f} |")
    floor = None
    if (Path(args.data) / "feature_map.json").exists():
        from features.stats import popularity_auc

        floor = popularity_auc(args.data, "valid")
        lines.append(f"| popularity ranking (train clicks) | | {popularity_auc(args.data, 'test'):.4f} | | | | "
                     f"{floor:.4f} | |")
    stats_path = Path(args.data) / "stats.json"
    if stats_path.exists():
        oracle = json.loads(stats_path.read_text())["splits"]["test"].get("oracle_auc")
        if oracle is not None:
            lines.append(f"| oracle (Bayes) | | {oracle:.4f} | | | | | |")
    if floor is not None:
        lines += ["", floor_note(epochs_below(Path(args.out), args, floor), args,
                                 runs=sum(row["seeds"] for row in summary.values()))]
    return "\n".join(lines)
