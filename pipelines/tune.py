"""``suan tune``: Optuna over any ``suan train`` option, on valid AUC only; the best trial becomes a recipe file.

setup (search space, base options, study on RDB storage) → optimise (each trial is a normal
``suan train`` run under ``trials/``, logged to MLflow, pruned on per-epoch valid AUC, test never read)
→ write ``best_recipe.yaml`` (what ``suan train --config`` takes) → read test once, for the best trial
only → ``report.md``.

The study lives in its storage, not in this process: a killed tuning run resumes where it stopped,
and several processes or machines given the same ``--storage`` and ``--study`` share the work
(Optuna's heartbeat fails a trial whose process died, so it does not hang the study).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import yaml

from pipelines.args import MIXER_PATH, TrainArgs, TuneArgs, fold_mixer_paths
from pipelines.artifacts import load_model_dir
from pipelines.evaluate import evaluate
from pipelines.tracking import sqlite_lock
from pipelines.train import run_train
from suan.utils.config import ConfigError, require

KINDS = ("float", "int", "categorical")
# fields a search may not touch: where a trial reads and writes, and what makes it a tuning trial
FIXED = ("data", "out", "resume", "test", "mlflow_uri", "experiment", "progress")


def load_space(path: str | Path) -> dict[str, dict]:
    """Read and check a search space: every key a ``suan train`` option, every spec well formed."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    require(isinstance(data, dict) and bool(data), f"{path}: a search space is a non-empty mapping")
    options = {f.name for f in dataclasses.fields(TrainArgs)} - set(FIXED)
    for name, spec in data.items():
        require(name in options or name.startswith(MIXER_PATH),
                f"{path}: {name!r} is not a tunable suan train option; choose from {sorted(options)} or a "
                f"mixer's own option as {MIXER_PATH}<field>")
        require(isinstance(spec, dict) and spec.get("type") in KINDS,
                f"{path}: {name}: give a mapping with type one of {KINDS}")
        if spec["type"] == "categorical":
            require(isinstance(spec.get("choices"), list) and bool(spec["choices"]), f"{path}: {name}: needs choices")
        else:
            require("low" in spec and "high" in spec and float(spec["low"]) < float(spec["high"]),
                    f"{path}: {name}: needs low < high")
    return data


def suggest(trial: optuna.Trial, space: dict[str, dict]) -> dict[str, Any]:
    """One trial's values for every option of the space."""
    values = {}
    for name, spec in space.items():
        if spec["type"] == "float":
            values[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
        elif spec["type"] == "int":
            values[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)),
                                             log=bool(spec.get("log")))
        else:
            values[name] = trial.suggest_categorical(name, spec["choices"])
    return values


class PruneOnValidAUC(L.Callback):
    """Reports each epoch's valid AUC to the trial and stops the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or "valid_auc" not in trainer.callback_metrics:
            return
        self.trial.report(float(trainer.callback_metrics["valid_auc"]), step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {trainer.current_epoch}")


def base_options(args: TuneArgs) -> dict[str, Any]:
    """The fixed options of every trial: the defaults, the base file, the model and grade."""
    base = {"model": args.model, "grade": args.grade}
    if args.base:
        loaded = yaml.safe_load(Path(args.base).read_text()) or {}
        require(isinstance(loaded, dict), f"{args.base}: expected a mapping of suan train options")
        base.update({k: v for k, v in loaded.items() if k not in FIXED})
    return base


def run_tune(args: TuneArgs) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space, base = load_space(args.space), base_options(args)
    mlflow_uri = args.mlflow_uri or f"sqlite:///{(out / 'mlflow' / 'mlflow.db').resolve()}"
    # the heartbeat is how a study on shared storage notices a trial whose process died
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = args.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1) if args.prune \
        else optuna.pruners.NopPruner()
    with sqlite_lock(url):  # several tuners started at once on a new storage: one creates its schema
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
        study = optuna.create_study(study_name=args.study, storage=storage, direction="maximize", load_if_exists=True,
                                    sampler=optuna.samplers.TPESampler(seed=args.seed), pruner=pruner)
    study.set_user_attr("base", base)

    def objective(trial: optuna.Trial) -> float:
        values = {**base, **suggest(trial, space)}
        run = out / "trials" / f"trial-{trial.number:04d}"
        try:
            train = TrainArgs.from_dict(fold_mixer_paths({**values, "data": args.data, "out": str(run), "test": False,
                                         "progress": False, "mlflow_uri": mlflow_uri, "experiment": f"tune-{args.study}"}))
        except ConfigError as exc:  # a combination the options refuse (e.g. warm-up with plateau) scores nothing
            raise optuna.TrialPruned(f"invalid combination: {exc}") from exc
        trial.set_user_attr("run", str(run))
        metrics = run_train(train, callbacks=(PruneOnValidAUC(trial),))
        return float(metrics["valid_auc"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=args.trials, timeout=args.timeout or None, catch=(Exception,),
                   show_progress_bar=True)
    return write_outcome(study, base, args, out)


def write_outcome(study: optuna.Study, base: dict, args: TuneArgs, out: Path) -> dict:
    """``best_recipe.yaml``, the best trial's test metrics (read once) and ``report.md``."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ConfigError(f"study {args.study!r} has no completed trial yet")
    best = study.best_trial
    recipe = fold_mixer_paths({**base, **best.params})  # what suan train --config takes
    recipe = {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items()}
    (out / "best_recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=True))
    model, _, _ = load_model_dir(Path(best.user_attrs["run"]) / "model")
    test = evaluate(model.eval(), args.data, "test", batch_size=4096)
    outcome = {"study": args.study, "best_trial": best.number, "valid_auc": best.value, "recipe": recipe,
               "test": test, "trials": {s.name: sum(t.state == s for t in study.trials)
                                        for s in optuna.trial.TrialState}}
    (out / "best.json").write_text(json.dumps(outcome, indent=2) + "\n")
    (out / "report.md").write_text(report(study, outcome) + "\n")
    print(report(study, outcome))
    return outcome


def report(study: optuna.Study, outcome: dict) -> str:
    """The trials by valid AUC, the recipe, and the one test figure."""
    names = sorted({k for t in study.trials for k in t.params})
    lines = [f"# Tuning study {outcome['study']}", "",
             f"Best trial {outcome['best_trial']}: valid AUC {outcome['valid_auc']:.4f}; "
             f"test AUC {outcome['test']['test_auc']:.4f} (test read once, for this trial only).", "",
             "Recipe (`suan train --config best_recipe.yaml --data D --out R`):", "", "```yaml",
             yaml.safe_dump(outcome["recipe"], sort_keys=True).strip(), "```", "",
             "| trial | state | valid AUC | epochs | " + " | ".join(names) + " |",
             "|---:|---|---:|---:|" + "---|" * len(names)]
    ranked = sorted(study.trials, key=lambda t: -(t.value if t.value is not None else -1))
    for t in ranked:
        value = f"{t.value:.4f}" if t.value is not None else ""
        epochs = len(t.intermediate_values)
        cells = " | ".join(_fmt(t.params.get(n, "")) for n in names)
        lines.append(f"| {t.number} | {t.state.name.lower()} | {value} | {epochs} | {cells} |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
