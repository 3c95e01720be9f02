"""``suan distill``: online (or offline) distillation of a SUAN teacher into a LightSUAN student.

Same set-up, checkpoints, MLflow tracking and outputs as ``suan train``; the student lands in
``model/`` (so export and serving take it as is) and the teacher in ``teacher_model/``.
"""

from __future__ import annotations

from pathlib import Path

from distill.system import DistillConfig, DistillSystem
from pipelines.args import TRAIN_DEFAULTS, DistillArgs
from pipelines.artifacts import load_model_dir, save_model_dir
from pipelines.tracking import make_logger
from pipelines.train import (
    build_trainer,
    final_metrics,
    fit_and_evaluate,
    l2_weights,
    model_config,
    start_run,
    write_outputs,
)
from suan.models.counts import count_params
from suan.models.ctr import build_model


def run_distill(args: DistillArgs) -> dict:
    targs = args.student_train_args()
    out, dm = start_run(targs)
    student_cfg = model_config(targs, dm.fmap)
    student = build_model(student_cfg, dm.fmap)
    if args.mode == "offline":
        given = Path(args.teacher_run)
        # a run folder of `suan train` or a model folder itself (e.g. another distillation's teacher_model/)
        teacher, teacher_cfg, _ = load_model_dir(given if (given / "model.pt").exists() else given / "model")
    else:
        # the student's sparse pattern is not the teacher's: the teacher keeps its own mixer's defaults
        teacher_args = targs.replace(model=args.teacher_model, grade=args.teacher_grade,
                                     local_window=TRAIN_DEFAULTS["local_window"], dilation=TRAIN_DEFAULTS["dilation"],
                                     mixer_options=())
        teacher_cfg = model_config(teacher_args, dm.fmap)
        teacher = build_model(teacher_cfg, dm.fmap)
    system = DistillSystem(student, teacher, targs.optim(),
                           DistillConfig(mode=args.mode, temperature=args.temperature, weight=args.weight),
                           l2_weights(targs, dm))
    args.save(out / "distill_config.yaml")
    targs.save(out / "train_config.yaml")
    student_cfg.save(out / "model_config.json")
    teacher_cfg.save(out / "teacher_config.json")
    logger = make_logger(args.mlflow_uri, args.experiment, out.name, out)
    trainer, best, throughput = build_trainer(targs, out, logger)
    stopped_early = fit_and_evaluate(trainer, system, dm, best, targs, out)
    metrics = final_metrics(system, student_cfg, dm, throughput, trainer, stopped_early)
    metrics["teacher_params_dense"] = count_params(teacher)["dense"]
    if trainer.is_global_zero:
        write_outputs(out, targs, system.model, student_cfg, metrics, logger)
        save_model_dir(out / "teacher_model", teacher, teacher_cfg, args.data)
        logger.experiment.set_tag(logger.run_id, "distill_mode", args.mode)
    return metrics
