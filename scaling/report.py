"""Fit a sweep: per-axis and joint power laws, plots, ``scaling_fit.json`` and a Markdown report.

Seeds are averaged per (grade, sequence length, fraction). The model size N is the encoder's
non-embedding parameters: the MLP head is counted apart (at small grades it is most of the dense
parameters and would hide the encoder's growth). Model-size axes (N, FLOPs per sample) use the runs
at the largest data fraction; the data axis uses the grade with the most data fractions (the largest
such grade: a full grid's largest grade, a cheap sweep's one small grade); the sequence-length
axis the runs of the largest grade at the largest fraction; the joint law uses every point at the
grades' own lengths. A fit that the points cannot identify (fewer than 4
distinct values on an axis) is recorded as skipped with the reason, never forced. Where an axis
stops improving (its best point is not its largest) the report says where the law bends and fits
only the points up to it; an exponent stuck at the edge of its search range is flagged as "no power
law identified" rather than reported as a finding.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np

from scaling.fit import compute_optimal, compute_optimal_ci, find_bend, fit_axis, fit_joint
from scaling.manifest import MANIFEST, load_manifest
from scaling.plots import plot_axis_fit, plot_joint_contours, plot_lr_curves, plot_sweep_grid

AXES = {"params_encoder": "encoder parameters (non-embedding)", "flops_per_sample": "forward FLOPs per sample",
        "train_samples": "training samples", "seq_len": "behaviours read (L)"}
METRICS = {"logloss": "test_logloss", "auc": "test_auc"}
SELECT_ON = "valid_logloss"  # a searched learning rate is chosen on valid, never on test


def sweep_points(manifest: dict) -> list[dict]:
    """Finished points averaged over seeds: grade, length set, fraction, axes, metrics, seeds, wall seconds."""
    groups: dict[tuple, dict[int, dict]] = {}
    sweep_lr = manifest.get("config", {}).get("lr", 0.0)
    for p in manifest["points"].values():
        if p.get("status") == "done":
            # lr_set 0 is "the sweep's --lr": resolved to the rate it trained at, so a point of a study at the
            # default rate and the same cell's points of a study searching --lrs draw one loss-vs-lr curve
            lr = p.get("lr") or p.get("lr_set") or sweep_lr
            cell = groups.setdefault((p["grade"], p.get("seq_len_set", 0), p["fraction"], lr), {})
            cell.setdefault(p["seed"], p)  # one point per seed: two studies may both have trained it
    out = []
    for (grade, seq_len_set, fraction, lr_set), by_seed in sorted(groups.items()):
        runs = list(by_seed.values())
        # manifests written before the encoder/head split and the recorded L: dense parameters, L unknown
        m = [{"params_encoder": r["metrics"].get("params_dense", np.nan), "seq_len": float("nan"), **r["metrics"]}
             for r in runs]
        row = {"grade": grade, "seq_len_set": seq_len_set, "fraction": fraction, "lr_set": lr_set, "seeds": len(runs),
               "wall_s": float(np.mean([r["wall_s"] for r in runs])),
               "samples_per_second": float(np.mean([r["metrics"].get("samples_per_second", np.nan) for r in runs])),
               "mfu": float(np.mean([r.get("mfu", np.nan) for r in runs]))}
        row.update({k: float(np.mean([x.get(k, np.nan) for x in m]))
                    for k in (*AXES, *METRICS.values(), SELECT_ON, "params_dense", "params_head")})
        # how much data each dense weight sees: where a size axis saturates, this is usually the reason
        row["samples_per_dense_param"] = row["train_samples"] / row["params_dense"]
        # per seed, so rates of one cell can be compared on the seeds they share (paired)
        row["valid_by_seed"] = {seed: float(r["metrics"].get(SELECT_ON, np.nan)) for seed, r in by_seed.items()}
        # seeds that ran to their epoch/step budget with the metric still improving (manifests before the
        # record: unknown, not counted)
        row["budget_bound"] = sum(r["metrics"].get("stopped_early") == 0.0 for r in runs)
        out.append(row)
    return out


def tune_lr(points: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per (grade, length, data size), the learning rate with the lowest valid logloss (mean over the seeds
    every rate of the cell ran).

    Returns the chosen points (every point when no rate was searched) and every searched point with a
    ``chosen`` flag (empty when none was searched), for the loss-vs-lr curves.
    """
    cells: dict[tuple, list[dict]] = {}
    for p in points:
        cells.setdefault((p["grade"], p["seq_len_set"], p["fraction"]), []).append(p)
    chosen, searched = [], []
    for rows in cells.values():
        # compared on the seeds every rate of the cell ran (paired): a rate run on an extra, luckier seed
        # would otherwise win by that seed's luck, not the rate's
        shared = tuple(set.intersection(*(set(r["valid_by_seed"]) for r in rows)))
        best = rows[int(np.argmin([_paired_valid(r, shared) for r in rows]))]  # the first of equals, as min did
        chosen.append(best)
        if len(rows) > 1:
            searched += [{**r, "chosen": r is best} for r in rows]
    return chosen, searched


def _paired_valid(row: dict, seeds: tuple) -> float:
    """A point's valid logloss over ``seeds`` (its seed mean when none is shared); inf when not finite."""
    v = float(np.mean([row["valid_by_seed"][s] for s in seeds])) if seeds else row[SELECT_ON]
    return v if np.isfinite(v) else np.inf


def _own_lengths(points: list[dict]) -> list[dict]:
    """The points at each grade's own L (or, in a sweep without them, at the longest L set)."""
    base = 0 if any(p["seq_len_set"] == 0 for p in points) else max(p["seq_len_set"] for p in points)
    return [p for p in points if p["seq_len_set"] == base]


def _axis_subset(points: list[dict], axis: str) -> list[dict]:
    if not points:
        return []
    top_grade, top_fraction = max(p["grade"] for p in points), max(p["fraction"] for p in points)
    if axis == "seq_len":
        return [p for p in points if p["grade"] == top_grade and p["fraction"] == top_fraction]
    own = _own_lengths(points)
    if axis == "train_samples":  # the grade with the most data sizes (the largest among equals)
        sizes = {g: len({p["fraction"] for p in own if p["grade"] == g}) for g in {p["grade"] for p in own}}
        grade = max(sizes, key=lambda g: (sizes[g], g))
        return [p for p in own if p["grade"] == grade]
    return [p for p in own if p["fraction"] == top_fraction]


def fit_sweep(sweep: str | Path, out: str | Path | None = None, n_bootstrap: int = 200) -> dict:
    """Fit every identifiable law of a sweep; writes ``scaling_fit.json``, ``plots/`` and ``report.md``."""
    sweep = Path(sweep)
    out = Path(out) if out else sweep
    (out / "plots").mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(sweep)
    if not any(p.get("status") == "done" for p in manifest["points"].values()):
        raise FileNotFoundError(errno.ENOENT, "no finished sweep point to fit: run `suan scale sweep --out` this "
                                "folder first (a running sweep adds each point as it finishes)", str(sweep / MANIFEST))
    points, searched = tune_lr(sweep_points(manifest))
    floors = known_floors(manifest)
    result: dict = {"points": points, "lr_search": searched, "per_axis": {}, "joint": {}, "compute_optimal": {},
                    "known_floor": floors}
    if searched:
        plot_lr_curves(searched, out / "plots" / "lr_search.png")
    for metric, key in METRICS.items():
        if points:
            plot_sweep_grid(_own_lengths(points), metric, out / "plots" / f"sweep_{metric}.png")
        for axis, label in AXES.items():
            sub = _axis_subset(points, axis)
            name = f"{metric}_vs_{axis}"
            x, y = np.array([p[axis] for p in sub]), np.array([p[key] for p in sub])
            # past its best point the axis no longer follows a law: fit up to the bend and say where it is
            bend = find_bend(x, y, metric=metric)
            keep = x <= bend["best_x"] if bend else np.ones(len(x), dtype=bool)
            try:
                # fit_axis refuses fewer than 4 distinct x: 3 points would be interpolated, not fitted
                fit = fit_axis(x[keep], y[keep], metric=metric, axis=axis, n_bootstrap=n_bootstrap,
                               floor=floors.get(metric, 0.0))
            except ValueError as exc:
                values = len(set(x[keep].tolist()))
                result["per_axis"][name] = {"skipped": f"{exc} (have {values} values of "
                                                       f"{axis}{' up to the bend' if bend else ''})", "bend": bend,
                                            "why": why_axis_skipped(values, axis, bend)}
                continue
            result["per_axis"][name] = {**fit.to_dict(), "bend": bend}
            plot_axis_fit(fit, x, y, out / "plots" / f"{name}.png", color_by=[p["fraction"] for p in sub],
                          x_label=label, title=f"{metric} vs {label}")
        _joint(points, metric, key, out, n_bootstrap, result, floors.get(metric, 0.0))
    (out / "scaling_fit.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(render_report(result) + "\n")
    return result


def known_floors(manifest: dict) -> dict[str, float]:
    """The sweep data's Bayes limit on the test split, where its ``stats.json`` records one (a synthetic world's
    oracle): ``{"logloss": least logloss, "auc": 1 - oracle AUC}``, the floors no fitted law may run below;
    empty when the data has no oracle or its folder is not found from here."""
    stats = Path(manifest.get("config", {}).get("data", "")) / "stats.json"
    if not stats.is_file():
        return {}
    test = json.loads(stats.read_text()).get("splits", {}).get("test", {})
    floors = {"logloss": test.get("oracle_logloss"), "auc": 1.0 - test["oracle_auc"] if "oracle_auc" in test else None}
    return {k: float(v) for k, v in floors.items() if v is not None}


def why_axis_skipped(values: int, axis: str, bend: dict | None) -> str:
    """One sentence a newcomer understands: why no law was fitted along ``axis`` (``values`` distinct values)."""
    label = AXES[axis]
    if values <= 1:
        return f"this sweep did not vary the {label}, so there is no law along it to fit"
    if bend:
        return (f"the metric stops improving at {bend['best_x']:,.4g} {label}, and the {values} value(s) up to there "
                "are too few for a law (it needs 4)")
    return (f"{values} distinct values of the {label} are too few: a law with a floor, a scale and an exponent needs "
            "at least 4 points to be a fit rather than a curve drawn through them")


def _joint(points: list[dict], metric: str, key: str, out: Path, n_bootstrap: int, result: dict,
           floor: float = 0.0) -> None:
    points = _own_lengths(points) if points else points
    n = np.array([p["params_encoder"] for p in points])
    d = np.array([p["train_samples"] for p in points])
    y = np.array([p[key] for p in points])
    try:
        fit = fit_joint(n, d, y, metric=metric, axes=("params_encoder", "train_samples"), n_bootstrap=n_bootstrap,
                        floor=floor)
    except ValueError as exc:
        sizes, datas = len(set(n.tolist())), len(set(d.tolist()))
        result["joint"][metric] = {"skipped": f"{exc} (have {sizes} model sizes, {datas} data sizes)",
                                   "why": "a joint law of model and data size needs at least 3 model sizes and 3 data "
                                          f"sizes, and 6 points; this sweep has {sizes} model size(s) and {datas} "
                                          "data size(s)"}
        return
    result["joint"][metric] = fit.to_dict()
    plot_joint_contours(fit, n, d, y, out / "plots" / f"joint_{metric}.png", n_label=AXES["params_encoder"],
                        d_label=AXES["train_samples"], title=f"iso-{metric} contours of the joint fit")
    if fit.at_bound:  # an allocation from an exponent the data did not identify would be made up
        result["compute_optimal"][metric] = {
            "skipped": f"{', '.join(fit.at_bound)} not identified",
            "why": f"the joint law's {' and '.join(fit.at_bound)} ran to the edge of its search range: these points do "
                   "not pin it down, so a best split of compute between model and data from it would be made up"}
        return
    budgets = [float(np.median(n * d)) * 6 * s for s in (1.0, 10.0, 100.0)]
    result["compute_optimal"][metric] = [{**compute_optimal(fit, c).to_dict(), "ci": compute_optimal_ci(fit, c)}
                                         for c in budgets]


def render_report(result: dict) -> str:
    """Markdown: points table, fitted laws with CIs, R², extrapolation errors, embedded plots."""
    lines = ["# Scaling-law report", "", "## Sweep points (seed means)", "",
             "| grade | L | fraction | seeds | encoder params | head params | FLOPs/sample | train samples "
             "| samples per dense param | test logloss | test AUC | wall s | samples/s | MFU |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in result["points"]:
        lines.append(f"| {p['grade']} | {p.get('seq_len', float('nan')):.0f} | {p['fraction']:g} | {p['seeds']} | "
                     f"{p['params_encoder']:,.0f} | {p.get('params_head', float('nan')):,.0f} | "
                     f"{p['flops_per_sample']:,.0f} | {p['train_samples']:,.0f} | "
                     f"{p.get('samples_per_dense_param', float('nan')):.3g} | {p['test_logloss']:.4f} | "
                     f"{p['test_auc']:.4f} | {p['wall_s']:.0f} | {p.get('samples_per_second', float('nan')):,.0f} | "
                     f"{100 * p.get('mfu', float('nan')):.2f} % |")
    lines += ["", *(f"![measured {m}](plots/sweep_{m}.png)" for m in METRICS)]
    lines += _budget_lines(result["points"])
    floor = result.get("known_floor", {})
    if floor:
        known = ", ".join(f"{m} {v if m == 'logloss' else 1 - v:.4f}" for m, v in floor.items())
        lines += ["", f"**The data's Bayes limit on test** (its oracle): {known}. Every law of these metrics is "
                  "fitted within it (E ≥ that logloss, AUC_inf ≤ that AUC): none may promise what the data cannot give."]
    lines += _lr_lines(result.get("lr_search", []))
    for section, fits in (("Per-axis fits", result["per_axis"]), ("Joint fits", result["joint"])):
        lines += ["", f"## {section}", ""]
        for name, fit in fits.items():
            bend = fit.get("bend")
            if bend:
                after = ", ".join(f"{x:,.4g}: {y:.4f}" for x, y in bend["after"])
                lines.append(f"- **{name}**: the law bends — best {bend['best']:.4f} at {bend['best_x']:,.4g}, "
                             f"worse beyond it ({after}); fitted only up to the bend")
            if "skipped" in fit:
                lines.append(f"- **{name}**: not fitted — {fit.get('why', fit['skipped'])} ({fit['skipped']})")
                continue
            lines.append(f"- **{name}**: `{fit['form']}`; R² = {fit['r2']:.3f}")
            if fit.get("at_bound"):
                lines.append(f"  - **no power law identified**: {', '.join(fit['at_bound'])} at the edge of the "
                             "exponent search, or its bootstrap interval spans > 2 orders of magnitude")
            if fit.get("floor_at_zero") and fit.get("known_floor"):
                lines.append("  - floor at the data's Bayes limit: no saturation above it in these points; the law "
                             "describes the observed range only")
            elif fit.get("floor_at_zero"):
                lines.append("  - floor not identified (→ 0): no saturation in these points; the law describes the "
                             "observed range only")
            for coef, value in fit["coefficients"].items():
                lo, hi = fit["ci"].get(coef, (None, None))
                ci = f"95% CI {lo:.4g} … {hi:.4g}" if lo is not None and hi is not None else "no bootstrap"
                lines.append(f"  - {coef} = {value:.4g} ({ci})")
            for check in fit.get("extrapolation", []):
                lines.append(f"  - extrapolation without the largest {check['axis']}: relative error "
                             f"{', '.join(f'{e:.2%}' for e in check['rel_error'])}")
            prefix = "joint_" if section == "Joint fits" else ""
            lines.append(f"\n  ![{name}](plots/{prefix}{name}.png)\n")
    return "\n".join(lines + _compute_optimal_lines(result.get("compute_optimal", {})))


def _budget_lines(points: list[dict]) -> list[str]:
    """Points that their epoch or step budget ended, not early stopping: said plainly, since they bias a law."""
    bound = [p for p in points if p.get("budget_bound")]
    if not bound:
        return []
    names = ", ".join(f"grade {p['grade']} at fraction {p['fraction']:g} ({p['budget_bound']} of {p['seeds']} "
                      f"seed{'s' if p['seeds'] > 1 else ''})" for p in bound)
    return ["", f"**Ended by their budget, not by early stopping**: {names}. Their valid metric was still improving "
            "when --max-epochs (or --max-steps) stopped them, so they measure that budget, not the model trained "
            "to its best, and where the budget falls differently on two points (a plateau's lr cut before the "
            "cap on one, after it on the other) the difference is the schedule's, not the model's. Rerun them "
            "with a larger --max-epochs in a new sweep folder."]


def _lr_lines(searched: list[dict]) -> list[str]:
    """The learning-rate search: valid logloss per rate, the chosen one in bold, per grade, length and size."""
    if not searched:
        return []
    lines = ["", "## Learning rate per point (chosen on valid logloss)", "",
             "| grade | L | fraction | lr | valid logloss | test logloss |", "|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(searched, key=lambda r: (r["grade"], r["seq_len_set"], r["fraction"], r["lr_set"])):
        mark = "**" if r["chosen"] else ""
        lines.append(f"| {r['grade']} | {r.get('seq_len', float('nan')):.0f} | {r['fraction']:g} | {mark}{r['lr_set']:g}{mark} | "
                     f"{r[SELECT_ON]:.4f} | {r['test_logloss']:.4f} |")
    edge = sorted({(r["grade"], r["lr_set"]) for r in searched if r["chosen"] and r["lr_set"] in
                   (min(x["lr_set"] for x in searched), max(x["lr_set"] for x in searched))})
    if edge:
        lines.append("\n- the chosen rate is at the edge of the searched range for (grade, lr) "
                     f"{', '.join(f'({g}, {lr:g})' for g, lr in edge)}: widen the range there")
    return lines + ["", "![valid logloss vs learning rate per grade](plots/lr_search.png)"]


def _compute_optimal_lines(allocations: dict) -> list[str]:
    """Markdown for the joint law's compute-optimal (N, D) at three FLOP budgets, or why there is none."""
    lines = ["", "## Compute-optimal allocation (joint law, C = 6 N D)", ""]
    for metric, rows in allocations.items():
        if isinstance(rows, dict):
            lines.append(f"- **{metric}**: not computed — {rows.get('why', rows['skipped'])} ({rows['skipped']})")
            continue
        lines += [f"**{metric}**", "", "| FLOP budget | N (params) | 95% CI | D (samples) | 95% CI | predicted |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            ci = r.get("ci") or {}
            n_ci, d_ci = (f"{ci[k][0]:,.0f} … {ci[k][1]:,.0f}" if k in ci else "no bootstrap" for k in ("n_opt", "d_opt"))
            lines.append(f"| {r['flops']:.3g} | {r['n_opt']:,.0f} | {n_ci} | {r['d_opt']:,.0f} | {d_ci} | "
                         f"{r['metric_opt']:.4f} |")
        lines.append("")
    return lines


def run_scale_fit(args) -> dict:
    result = fit_sweep(args.sweep, args.out or None, args.bootstrap)
    print(render_report(result))
    return result


def run_scale_report(args) -> str:
    result = json.loads((Path(args.sweep) / "scaling_fit.json").read_text())
    text = render_report(result)
    (Path(args.sweep) / "report.md").write_text(text + "\n")
    print(text)
    return text
