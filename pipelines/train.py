"""``suan train``: one CTR model on a prepared folder, tracked in MLflow, resumable, evaluated honestly.

setup (seed, data, model, system, logger) → fit (checkpoints each epoch; ``--resume`` continues from
the last one) → evaluate the best checkpoint on valid and test → write ``metrics.json`` and the
model folder → log them to MLflow.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from features.schema import FeatureMap, Role
from pipelines.args import TrainArgs
from pipelines.artifacts import save_model_dir
from pipelines.callbacks import (
    AtomicCheckpointIO,
    EpochCurve,
    RNGStateCallback,
    RunFolderCheckpoint,
    ThroughputCallback,
)
from pipelines.datamodule import ShardDataModule
from pipelines.systems import CTRSystem
from pipelines.threads import set_threads
from pipelines.tracking import make_logger
from suan.config import GRADES, ModelConfig
from suan.models.counts import count_params, measure_flops
from suan.models.ctr import build_model
from suan.recipe.optim import PLATEAU_THRESHOLD
from suan.recipe.regularization import touch_weights
from suan.utils.config import ConfigError
from suan.utils.provenance import provenance

# TrainArgs fields that are ModelConfig fields of the same name pass through as they are (no hand-kept copy:
# a model setting added to both is plumbed); the grade, L and the mixer's options are resolved in model_config
_SHARED = {f.name for f in dataclasses.fields(TrainArgs)} & {f.name for f in dataclasses.fields(ModelConfig)}
PASSED_TO_MODEL = tuple(sorted(_SHARED - {"grade", "seq_len", "mixer", "mixer_options"}))


def model_config(args: TrainArgs, fmap: FeatureMap) -> ModelConfig:
    """The model of a run: grade table sizes for the data's behaviour fields, L capped by the data, run options."""
    seq_len = args.seq_len or min(GRADES[args.grade].seq_len, fmap.max_seq_len)
    mixer = {"mixer": args.mixer} if args.mixer else {}  # "" keeps the arch's own name in the saved config
    return ModelConfig.from_grade(args.model, args.grade, seq_fields=len(fmap.by_role(Role.SEQ)), seq_len=seq_len,
                                  mixer_options=args.mixer_settings(), **mixer,
                                  **{name: getattr(args, name) for name in PASSED_TO_MODEL})


def l2_weights(args: TrainArgs, dm: ShardDataModule) -> dict | None:
    """Per-id weights of the ``batch`` embedding-L2 scope (None for ``table``)."""
    if args.embedding_l2_scope != "batch":
        return None
    return touch_weights(dm.vocab_counts(), dm.stream("train").num_rows, args.batch_size)


def _quiet(progress: bool) -> None:
    # lightning's checkpoint-restore chatter and an internal deprecation warning drown the output
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    if not progress:
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def start_run(args: TrainArgs) -> tuple[Path, ShardDataModule]:
    """Check the run folder, seed everything, open the data."""
    _quiet(args.progress)
    out = Path(args.out)
    ckpt_dir = out / "checkpoints"
    if ckpt_dir.exists() and any(ckpt_dir.iterdir()) and not args.resume:
        raise ConfigError(f"{out} already holds checkpoints: pass --resume to continue or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    set_threads(args.threads)
    L.seed_everything(args.seed, workers=True, verbose=False)
    return out, ShardDataModule(args.data, batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed,
                                train_fraction=args.data_fraction, eval_fraction=args.eval_fraction,
                                bucket_by_length=args.bucket_by_length)


def build_trainer(args: TrainArgs, out: Path, logger) -> tuple[L.Trainer, ModelCheckpoint, ThroughputCallback]:
    """A deterministic trainer with best/last checkpoints and early stopping on the run's selection metric
    (``--select-on``: valid AUC or valid logloss), and RNG states."""
    throughput = ThroughputCallback()
    monitor, mode = args.optim().monitor
    best = RunFolderCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode=mode,
                           save_last=True, save_top_k=1, enable_version_counter=False)
    trainer = L.Trainer(
        max_epochs=args.max_epochs, max_steps=args.max_steps, precision=args.precision,
        gradient_clip_val=args.grad_clip or None, deterministic=True, accelerator=args.accelerator,
        devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy, logger=logger,
        # not strict: a --max-steps budget that ends inside the first epoch stops before any validation (the
        # best checkpoint is then the last, validated and tested after fit)
        callbacks=[best, EarlyStopping(monitor=monitor, mode=mode, patience=args.patience,
                                       min_delta=PLATEAU_THRESHOLD, strict=False),
                   RNGStateCallback(), throughput, EpochCurve(out / "curve.json")],
        enable_progress_bar=args.progress, log_every_n_steps=args.log_every_n_steps, num_sanity_val_steps=0,
        # lightning builds the training loader once and tells only a DistributedSampler the epoch: rebuilding
        # it every epoch is what hands ShardStream the new epoch (else every epoch replays epoch 0's order)
        reload_dataloaders_every_n_epochs=1,
        default_root_dir=out, enable_model_summary=False, plugins=[AtomicCheckpointIO()],
    )
    return trainer, best, throughput


def same_model_as_started(cfg: ModelConfig, out: Path) -> None:
    """On resume, the model must be the one the checkpoint was trained as (defaults may have changed since)."""
    saved = out / "model_config.json"
    if not saved.exists():
        return
    started = ModelConfig.load(saved)  # an older file is upgraded to what it meant
    diff = {f: (getattr(started, f), getattr(cfg, f)) for f in cfg.to_dict() if getattr(started, f) != getattr(cfg, f)}
    if diff:
        told = ", ".join(f"{f}: {a!r} then, {b!r} now" for f, (a, b) in sorted(diff.items()))
        raise ConfigError(f"{out} was started with another model ({told}): resume with the options it was started "
                          "with, or choose another --out")


def fit_and_evaluate(trainer: L.Trainer, system: L.LightningModule, dm: ShardDataModule, best: ModelCheckpoint,
                     args: TrainArgs, out: Path) -> bool:
    """Fit (resuming from ``last.ckpt`` when asked), then validate and test the best checkpoint; returns whether
    early stopping ended the fit (read before the best checkpoint's callback states are restored)."""
    last = out / "checkpoints" / "last.ckpt"
    trainer.fit(system, dm, ckpt_path=str(last) if args.resume and last.exists() else None)
    stopped_early = any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks)
    best_path = best.best_model_path or str(last)
    trainer.validate(system, dm, ckpt_path=best_path, verbose=False)
    if args.test:
        trainer.test(system, dm, ckpt_path=best_path, verbose=False)
    return stopped_early


def run_train(args: TrainArgs, callbacks: tuple[L.Callback, ...] = ()) -> dict:
    """Train, evaluate, write the run folder; ``callbacks`` join the trainer's (``suan tune``'s pruning)."""
    out, dm = start_run(args)
    cfg = model_config(args, dm.fmap)
    if args.resume:
        same_model_as_started(cfg, out)
    system = CTRSystem(build_model(cfg, dm.fmap), args.optim(), l2_weights(args, dm))
    args.save(out / "train_config.yaml")
    cfg.save(out / "model_config.json")
    logger = make_logger(args.mlflow_uri, args.experiment, out.name, out)
    trainer, best, throughput = build_trainer(args, out, logger)
    trainer.callbacks.extend(callbacks)
    stopped_early = fit_and_evaluate(trainer, system, dm, best, args, out)
    metrics = final_metrics(system, cfg, dm, throughput, trainer, stopped_early)
    if trainer.is_global_zero:
        finish_run(out, args, system.model, cfg, metrics, logger)
    return metrics


def final_metrics(system: L.LightningModule, cfg: ModelConfig, dm: ShardDataModule, throughput: ThroughputCallback,
                   trainer: L.Trainer, stopped_early: bool) -> dict:
    params = count_params(system.model)
    metrics = {k: float(v) for k, v in system.last_metrics.items()}
    metrics.update({
        "params_dense": params["dense"], "params_embedding": params["embedding"], "params_encoder": params["encoder"],
        "params_head": params["head"],
        "flops_per_sample": measure_flops(system.model, dm.fmap, cfg.seq_len),
        "train_samples": dm.stream("train").num_rows, "samples_per_second": throughput.samples_per_second,
        "epochs": trainer.current_epoch, "global_step": trainer.global_step, "seq_len": cfg.seq_len,
        # 0 = the epoch or step budget ended training while the metric still improved: the run measures its
        # budget, not the model trained to its best (a sweep's report flags such points)
        "stopped_early": float(stopped_early),
    })
    return metrics


def finish_run(out: Path, args: TrainArgs, model, cfg: ModelConfig, metrics: dict, logger) -> None:
    """:func:`write_outputs`, all or nothing: on any failure no ``metrics.json`` (the mark of a finished run)
    is left, the MLflow run is marked FAILED and the error is re-raised."""
    try:
        write_outputs(out, args, model, cfg, metrics, logger)
    except BaseException:
        (out / "metrics.json").unlink(missing_ok=True)
        try:
            logger.experiment.set_terminated(logger.run_id, "FAILED")
        except Exception:  # noqa: BLE001 - the store may be on the full disk too; the original error matters
            logging.getLogger(__name__).warning("could not mark MLflow run %s FAILED", logger.run_id)
        raise


def write_outputs(out: Path, args: TrainArgs, model, cfg: ModelConfig, metrics: dict, logger) -> None:
    """The model folder (atomic), provenance, everything logged to MLflow, and ``metrics.json`` last."""
    model_dir = save_model_dir(out / "model", model, cfg, args.data)
    (out / "provenance.json").write_text(json.dumps(provenance(), indent=2) + "\n")
    client, run_id = logger.experiment, logger.run_id
    for key, value in {"git_sha": provenance()["git_sha"], "arch": cfg.arch, "grade": str(cfg.grade),
                       "data_fraction": str(args.data_fraction), "seed": str(args.seed),
                       "feature_map_hash": json.loads((model_dir / "feature_map.json").read_text())["hash"]}.items():
        client.set_tag(run_id, key, value)
    for key, value in metrics.items():
        client.log_metric(run_id, f"final_{key}", float(value))
    model_params = {f"model.{k}": v for k, v in cfg.to_dict().items() if k != "mixer_options"}
    model_params.update({f"model.mixer.{k}": v for k, v in cfg.mixer_options.to_dict().items()})  # dotted paths
    logger.log_hyperparams({**{f"train.{k}": v for k, v in args.to_dict().items()}, **model_params})
    client.log_artifacts(run_id, str(model_dir), "model")
    for name in ("train_config.yaml", "provenance.json"):
        client.log_artifact(run_id, str(out / name))
    # last: a run folder with metrics.json is complete (finish_run removes it again if its upload fails)
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "metrics.json")
    client.log_artifact(run_id, str(out / "metrics.json"))
