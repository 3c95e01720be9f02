"""The ``suan`` command: one CLI, typed sub-commands (their config dataclass is their signature)."""

from __future__ import annotations

import signal
import sys

from features.errors import DataError
from features.model_folder import ModelFolderError
from pipelines.args import (
    AnalyzeArgs,
    CompareArgs,
    DemoArgs,
    DescribeArgs,
    DistillArgs,
    EvalArgs,
    ExportArgs,
    PrepareArgs,
    ScaleFitArgs,
    ScaleReportArgs,
    ServeArgs,
    SweepArgs,
    SynthArgs,
    TrainArgs,
    TuneArgs,
)
from pipelines.errors import IncompleteWork
from pipelines.typed_cli import Command, build_parser, config_from_args
from suan.utils.config import ConfigError

COMMANDS = {
    "demo": Command(DemoArgs, "pipelines.demo:run_demo", "run the main job end to end on the embedded synthetic default"),
    "train": Command(TrainArgs, "pipelines.train:run_train", "train a CTR model (Lightning, MLflow, resumable)"),
    "tune": Command(TuneArgs, "pipelines.tune:run_tune",
                    "search training options with Optuna (resumable, shareable study); writes the best recipe"),
    "eval": Command(EvalArgs, "pipelines.evaluate:run_eval", "evaluate a trained run on valid or test"),
    "distill": Command(DistillArgs, "pipelines.distill:run_distill", "distil a SUAN teacher into a LightSUAN student"),
    "export": Command(ExportArgs, "pipelines.export:run_export", "export a run's model to ONNX behind a parity gate"),
    "serve": Command(ServeArgs, "pipelines.serve:run_serve", "serve an exported model over HTTP (ONNX Runtime)"),
    "analyze": Command(AnalyzeArgs, "pipelines.analyze:run_analyze",
                       "record a run's attention: sinks, position bias, target attention, calibration"),
    "compare": Command(CompareArgs, "pipelines.compare:run_compare", "train several models x seeds, tabulate mean ± sd"),
    "scale": {
        "__help__": "scaling-law tooling: graded sweeps, power-law fits, reports",
        "sweep": Command(SweepArgs, "pipelines.sweep:run_sweep", "train grades x data fractions x seeds (resumable)"),
        "fit": Command(ScaleFitArgs, "scaling.report:run_scale_fit", "fit power laws, write scaling_fit.json + plots"),
        "report": Command(ScaleReportArgs, "scaling.report:run_scale_report", "print the Markdown report of a fit"),
    },
    "data": {
        "__help__": "generate, prepare and describe datasets",
        "synth": Command(SynthArgs, "pipelines.data_cmds:run_synth", "generate the synthetic behaviour log"),
        "prepare": Command(PrepareArgs, "pipelines.data_cmds:run_prepare", "prepare an event log under a benchmark protocol"),
        "describe": Command(DescribeArgs, "pipelines.data_cmds:run_describe", "print the statistics of a prepared folder"),
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("suan", COMMANDS, "SUAN: CTR modelling on user behaviour sequences")
    ns = parser.parse_args(argv)
    command: Command = ns._command
    try:
        cfg = config_from_args(command.config_cls, ns)
        command.run(cfg)
    except (ConfigError, DataError, FileNotFoundError, ModelFolderError) as exc:
        print(f"suan: error: {exc}", file=sys.stderr)
        return 2
    except IncompleteWork as exc:  # the finished units are kept; a script or a job array must still see it
        print(f"suan: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a read-only folder: one line naming the path, not a trace
        where = f" {exc.filename}" if exc.filename else ""
        print(f"suan: error: cannot write or read{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:
        if not _stopped_by_sigterm(exc):
            raise
        print("suan: stopped by SIGTERM before the work finished: nothing was marked complete (no metrics.json) "
              "and the last checkpoint is kept; run the same command again to continue (train and distill: add "
              "--resume; compare and scale sweep resume their unfinished runs, tune resumes its study)", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0


def _stopped_by_sigterm(exc: SystemExit) -> bool:
    # Lightning turns SIGTERM into a SystemExit without a code, which would exit 0: a preempted or killed run
    # would read as a success to a shell `&&`, a scheduler or a job array
    if "lightning" not in sys.modules:
        return False
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    return isinstance(exc, SIGTERMException)


if __name__ == "__main__":
    sys.exit(main())
