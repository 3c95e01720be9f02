"""PNG plots (matplotlib Agg canvas, no pyplot global state) and the Markdown report of an attention analysis.

Input is the ``diagnostics.json`` dict written by ``suan analyze`` (numbers and lists only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from suan.analysis.diagnostics import SINK_KINDS


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=fig.dpi)
    return path


def plot_positions(diag: dict, path: Path) -> Path:
    """Heatmaps per absolute position (0 = oldest kept behaviour) x layer, head mean: the mass received
    (x tokens, 1 = average) and the sink score (over the larger of that share and uniform attention's)."""
    panels = (("mass_per_position", "mass × L (1 = average)"), ("sink_score_per_position", "sink score"))
    layers = len(diag["mass_per_position"])
    fig = _figure(7, 2 * (1.0 + 0.4 * layers))
    for row, (key, label) in enumerate(panels):
        ax = fig.add_subplot(2, 1, row + 1)
        image = ax.imshow(np.asarray(diag[key]).mean(1), aspect="auto", cmap="viridis", origin="lower")
        fig.colorbar(image, ax=ax, label=label)
        ax.set_ylabel("layer")
        ax.set_yticks(range(layers))
    fig.axes[-2].set_xlabel("position (0 = oldest behaviour; the candidate follows the history)")
    return _save(fig, path)


def plot_position_bias(diag: dict, path: Path) -> Path:
    """Attention mass vs position gap and vs log time bucket, per layer (head mean), uniform baseline dashed."""
    fig = _figure(11, 3.8)
    stripped = diag.get("without_relative_bias")
    for col, key, label in ((1, "distance", "position gap pos_q - pos_k"), (2, "time_bucket", "log time-gap bucket")):
        ax = fig.add_subplot(1, 2, col)
        mass = np.asarray(diag[key]["mass"]).mean(1)  # [N, K]
        used = np.nonzero(np.asarray(diag[key]["uniform"]).sum(0) > 0)[0]
        hi = int(used.max()) + 1 if len(used) else mass.shape[1]
        for layer in range(mass.shape[0]):
            line = ax.plot(mass[layer, :hi], label=f"layer {layer}")[0]
            ax.plot(np.asarray(diag[key]["uniform"][layer])[:hi], ls="--", color=line.get_color(), alpha=0.5)
            if stripped:
                ax.plot(np.asarray(stripped[key]["mass"]).mean(1)[layer, :hi], ls=":", color=line.get_color())
        ax.set_xlabel(label)
        ax.set_ylabel("attention mass per query")
        ax.set_yscale("log")
    fig.axes[0].legend(fontsize=7, title="solid: model, dashed: uniform" + (", dotted: bias removed" if stripped
                                                                             else ""), title_fontsize=7)
    return _save(fig, path)


def plot_sink_share(diag: dict, path: Path) -> Path:
    """Share of all attention landing on primary / secondary / early sinks, per layer (head mean)."""
    fig = _figure(6, 3.2)
    ax = fig.add_subplot()
    layers = np.arange(diag["num_layers"])
    width = 0.8 / len(SINK_KINDS)
    for k, kind in enumerate(SINK_KINDS):
        ax.bar(layers + k * width, diag["sinks"][kind]["share_per_layer"], width, label=kind)
    ax.set_xticks(layers + width, [str(i) for i in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("share of attention")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_users(diag: dict, path: Path) -> Path:
    """Per sample user: the candidate's last-layer attention (head mean) over its history and itself."""
    users = diag["users"] or [{"n_hist": 0, "target_attention": [[[1.0]]]}]
    fig = _figure(7, 1.6 * len(users) + 0.4)
    for u, user in enumerate(users):
        ax = fig.add_subplot(len(users), 1, u + 1)
        weights = np.asarray(user["target_attention"])[-1].mean(0)  # [n_hist + 1]
        colors = ["tab:blue"] * user["n_hist"] + ["tab:red"]
        ax.bar(np.arange(len(weights)), weights, color=colors)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"user {u}", fontsize=8)
    fig.axes[-1].set_xlabel("history position (oldest → newest), red = the candidate itself")
    return _save(fig, path)


def write_plots(diag: dict, out: Path) -> dict[str, Path]:
    """All figures of the report, written under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    return {"positions": plot_positions(diag, out / "mass_per_position.png"),
            "position_bias": plot_position_bias(diag, out / "position_bias.png"),
            "sinks": plot_sink_share(diag, out / "sink_share.png"),
            "users": plot_users(diag, out / "target_attention.png")}


def markdown(diag: dict, plots: dict[str, Path], title: str) -> str:
    """The report: summary tables, then the figures (paths relative to the report)."""
    lines = [f"# Attention analysis: {title}", "",
             f"{diag['rows']} rows, {diag['num_layers']} layers x {diag['num_heads']} heads. A key is a sink in a layer "
             f"where, in some head, its mean received attention is >= {diag['tau']} x both the average share 1/L and "
             "the share uniform attention over the allowed keys would give it. Primary: the first "
             f"{diag['anchors']} position(s), sinking in the first {diag['early_layers']} layer(s); secondary: sinking "
             "first in a later layer; early: other keys sinking in the early layers.", "",
             "| sinks | per row | mean peak score | mean lifetime (layers) | share of attention per layer |",
             "|---|---:|---:|---:|---|"]
    for kind in SINK_KINDS:
        s = diag["sinks"][kind]
        share = ", ".join(f"{v:.3f}" for v in s["share_per_layer"])
        lines.append(f"| {kind} | {s['per_row']:.2f} | {s['mean_peak_score']:.2f} | {s['mean_lifetime']:.2f} | {share} |")
    if diag.get("router"):
        r = diag["router"]
        lines += ["", f"Layer router: full attention chosen by {r['full_fraction']:.1%} of samples "
                  f"(per layer {', '.join(f'{v:.1%}' for v in r['full_fraction_per_layer'])}); running only the chosen "
                  f"branch saves an estimated {r['attention_flops_saved']:.1%} of attention FLOPs."]
    if diag.get("calibration"):
        lines += ["", "| sink calibration | valid AUC | test AUC |", "|---|---:|---:|"]
        for name, m in diag["calibration"].items():
            lines.append(f"| {name} | {m['valid_auc']:.4f} | {m['test_auc']:.4f} |")
    captions = {"positions": "Mean attention received per position and layer",
                "position_bias": "Attention mass vs position gap and vs log time-gap bucket",
                "sinks": "Share of attention on sinks per layer", "users": "Candidate attention over the history"}
    for key, path in plots.items():
        lines += ["", f"## {captions[key]}", "", f"![{captions[key]}]({path.parent.name}/{path.name})"]
    return "\n".join(lines) + "\n"
