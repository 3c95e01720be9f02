"""Typed configs of every ``suan`` sub-command: the signature of each command is its config.

Kept free of torch/lightning imports so that ``suan --help`` answers at once; each command's
run function lives in its own module and is imported only when that command runs.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Literal

from features.protocols import PROTOCOLS
from features.sources.synthetic import SynthConfig
from suan.config import ARCHS, GRADES, mixer_options_from_counts, mixer_spec, with_named_options
from suan.recipe.config import OptimConfig
from suan.utils.config import Config, ConfigError, require


def require_shares(config: Config, *names: str) -> None:
    """Each named field is a share of rows: in (0, 1]."""
    for name in names:
        require(0 < getattr(config, name) <= 1, f"{name} must be in (0, 1]")


SOURCES = ("synthetic", "movielens-100k", "amazon-5core", "events")


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoArgs(Config):
    """Run the main job end to end on synthetic data.

    Args:
        out: working folder. Default: runs/demo.
        users: synthetic users. Default: 2000.
        items: synthetic items (fewer items, more rows per item embedding). Default: 1000.
        events_per_user: mean events per user. Default: 40.
        max_seq_len: L. Default: 30.
        seed: Default: 0.
        models: architectures trained and compared. Default: suan,dnn,din,bst.
        grade: grade of every model (and of the distillation's student). Default: 0.
        epochs: epoch budget of every training run (suan train's recipe otherwise; early stopping ends most
            runs sooner). Default: 6.
        difficulty: weight of the synthetic world's structure that only capacity captures (item-to-item
            transitions, order and time gaps, profile x behaviour; ``suan data synth --difficulty``). At 1 SUAN
            leads every baseline by more than one test AUC's precision, but models train to the epoch budget:
            ~11.5 minutes on 2 cores with the online distillation stage (stop 28), not yet timed with the
            offline one, against ~7.5 for the default world. Default: 0.
        taste_weight: weight of the synthetic world's latent-taste term, whose power-law spectrum rewards wider
            models (``suan data synth --taste-weight``; 0 = off). Default: 0.
        sweep_grades: the mini scaling sweep's size axis, each grade trained on all the data (four or more fit a
            size law; empty = skip the sweep). ``-3,-2,-1,0`` adds about 4 minutes on 2 cores and, measured on
            one seed at difficulty 1 and 2, gives a step, not yet a law (docs/RESULTS.md). Default: 0.
        sweep_fractions: its data axis, shares of the training rows at ``grade`` (four or more fit a data-size
            law). Default: 0.125,0.25,0.5,1.0.
        sweep_lr: the sweep points' learning rate. Default: 1e-3 (suan train's).
        sweep_schedule: the sweep points' schedule; ``cosine`` decays each point's lr over its own epoch budget,
            so points capped by ``epochs`` end at a small lr instead of wherever a plateau cut fell. The
            comparison's SUAN run stands for the sweep's full-data point only when both are suan train's.
            Default: plateau (suan train's).
        distill: run the distillation stage. Default: True.
        distill_mode: ``offline`` distils the SUAN run of the comparison (frozen, nothing trained twice; needs
            ``suan`` among the models) into a LightSUAN student; ``online`` trains a SUAN teacher one grade up
            jointly with the student (``suan distill``'s default; about 1.5 minutes longer on 2 cores).
            Default: offline.
        distill_epochs: epoch budget of the student. Default: 3.
        batch_size: training batch of every run. Default: 1024 (suan train's).
    """

    out: str = "runs/demo"
    users: int = 2000
    items: int = 1000
    events_per_user: int = 40
    max_seq_len: int = 30
    seed: int = 0
    difficulty: float = 0.0
    taste_weight: float = 0.0
    models: tuple[str, ...] = ("suan", "dnn", "din", "bst")
    grade: int = 0
    epochs: int = 6
    sweep_grades: tuple[int, ...] = (0,)
    sweep_fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    sweep_lr: float = 1e-3
    sweep_schedule: Literal["plateau", "cosine", "constant"] = "plateau"
    distill: bool = True
    distill_mode: Literal["offline", "online"] = "offline"
    distill_epochs: int = 3
    batch_size: int = 1024

    def synth_config(self) -> SynthConfig:
        """The synthetic world the demo generates."""
        return SynthConfig(users=self.users, items=self.items, events_per_user=self.events_per_user, seed=self.seed,
                           difficulty=self.difficulty, taste_weight=self.taste_weight)

    def validate(self) -> None:
        require(self.users >= 10, "users must be >= 10")
        self.synth_config()  # the world's own checks (taste_weight, difficulty, ...), once, before any stage runs
        OptimConfig(lr=self.sweep_lr, schedule=self.sweep_schedule)  # the sweep's recipe, by the recipe's own checks
        require(self.distill_epochs >= 1 and self.batch_size >= 1, "distill_epochs and batch_size must be >= 1")
        require(all(g in GRADES for g in self.sweep_grades), "sweep grades must be in the grade table")
        require(self.distill_mode in ("offline", "online"), "distill_mode must be offline or online")
        if self.distill and self.distill_mode == "offline":
            require("suan" in self.models, "offline distillation distils the comparison's SUAN run: add suan to "
                    "--models or use --distill-mode online")
        if self.distill and self.distill_mode == "online":
            require(self.grade + 1 in GRADES, "online distillation needs a teacher one grade higher")
        require(all(m in ARCHS for m in self.models), f"models must be among {ARCHS}")
        require(self.grade in GRADES and self.epochs >= 1, "bad grade or epochs")


@dataclass(frozen=True, kw_only=True, slots=True)
class SynthArgs(SynthConfig):
    """Generate the synthetic behaviour log (Parquet, streamed in user blocks).

    Args:
        out: output folder (replaced atomically).
        users: number of users. Default: 2000.
        items: number of items. Default: 1000.
        categories: number of item categories. Default: 20.
        events_per_user: mean events per user (log-normal spread). Default: 40.
        seed: generator seed. Default: 0.
        affinity_weight: weight of the recency-weighted history affinity in the click logit. Default: 4.0.
        recency_hours: decay time constant of the affinity. Default: 6.
        drift: per-event probability that an interest slot is redrawn. Default: 0.1.
        difficulty: weight of the structure only capacity captures (item-to-item transitions, order and time-gap
            effects, profile x behaviour interactions; 0 = the plain world; the Bayes AUC stays the ceiling).
            Default: 0.
        taste_weight: weight of the latent-taste term, a bilinear item-to-history term whose directions have a
            power-law spectrum, so that wider models keep capturing more of it (0 = off; the scaling-law world).
            Default: 0.
        taste_dims: latent taste dimensions K. Default: 256.
        taste_decay: spectrum exponent a (> 0.5): direction k weighs k^(-a), and a model holding the top e
            directions misses about e^(1 - 2a) of the term. Default: 0.75.
        block_users: users held in memory at once. Default: 20000.
    """

    out: str

    def synth_config(self) -> SynthConfig:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(SynthConfig)}
        return SynthConfig(**values)


@dataclass(frozen=True, kw_only=True, slots=True)
class PrepareArgs(Config):
    """Prepare an event log into Parquet shards, feature_map.json, vocabularies and stats.json.

    Args:
        source: where the events come from.
        input: input folder (synthetic, movielens-100k, amazon-5core) or file/folder (events).
        out: output folder (written to a temporary folder, then renamed).
        protocol: P-ML, P-AZ, time-split or leave-last-out. Default: the source's own.
        max_seq_len: L, the most recent behaviours kept per sample. Default: 50.
        min_count: vocabulary minimum training count (rarer values → OOV). Default: 1.
        negatives: negatives per positive; -1 keeps the protocol's own. Default: -1.
        shard_rows: rows per Parquet shard. Default: 262144.
        item_fields: (events) columns describing the item, used for history and target.
        event_fields: (events) behaviour-only columns such as the action type.
        context_fields: (events) impression context columns.
        name: (amazon-5core) category prefix of the files, e.g. Beauty, Sports_and_Outdoors ("" = the only
            category in the folder). Default: "".
        users: (events) optional user-profile file with user_id and user_fields.
        user_fields: (events) profile columns of the users file.
        progress: show progress bars. Default: True.
    """

    source: Literal["synthetic", "movielens-100k", "amazon-5core", "events"]
    input: str
    out: str
    protocol: str = ""
    max_seq_len: int = 50
    min_count: int = 1
    negatives: int = -1
    shard_rows: int = 262144
    item_fields: tuple[str, ...] = ()
    event_fields: tuple[str, ...] = ()
    context_fields: tuple[str, ...] = ()
    name: str = ""
    users: str = ""
    user_fields: tuple[str, ...] = ()
    progress: bool = True

    def validate(self) -> None:
        require(self.source in SOURCES, f"source must be one of {SOURCES}")
        require(not self.protocol or self.protocol in PROTOCOLS, f"protocol must be one of {sorted(PROTOCOLS)}")
        require(self.max_seq_len >= 1 and self.min_count >= 1 and self.shard_rows >= 1,
                "max_seq_len, min_count and shard_rows must be >= 1")
        require(self.negatives >= -1, "negatives must be >= 0 (or -1 for the protocol's own)")


@dataclass(frozen=True, kw_only=True, slots=True)
class DescribeArgs(Config):
    """Print the statistics and fields of a prepared folder.

    Args:
        data: prepared folder.
    """

    data: str = dataclasses.field(metadata={"positional": True})


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainArgs(Config):
    """Train a CTR model.

    Args:
        data: prepared folder (``suan data prepare``).
        out: run folder (checkpoints, metrics.json, model/).
        model: architecture. Default: suan.
        grade: size from the grade table. Default: 2.
        seed: seeds everything (data order, init). Default: 0.
        max_epochs: epoch budget; early stopping on valid AUC normally ends training well before it (the
            cosine schedule decays over it). Default: 50.
        max_steps: stop after this many optimiser steps (-1 = no limit). Default: -1.
        batch_size: training rows per step (scoring uses larger batches). With the embedding L2 quoted per
            sample, 1024 and 256 measured alike on both real sets (3 seeds) and 1024 runs faster on a CPU
            (docs/RESULTS.md). Default: 1024.
        lr: dense learning rate (AdamW). Default: 1e-3.
        embedding_lr: embedding learning rate (0 = lr). Default: 0.
        attention_bias_lr: learning rate of the mixers' relative-position and time-gap bias tables (0 = lr;
            at lr they stay near zero over a few hundred steps, docs/RESULTS.md). Default: 0.
        weight_decay: decoupled AdamW decay of dense matrices. Default: 1e-5.
        schedule: plateau (lr × plateau_factor after an epoch without a better select_on metric), cosine (warm-up,
            then cosine decay over the epoch budget) or constant. Default: plateau.
        warmup_steps: linear warm-up steps (cosine, constant). Default: 0.
        warmup_fraction: linear warm-up as a share of the run's step budget instead (cosine, constant; not with
            warmup_steps). Default: 0.0.
        plateau_factor: lr multiplier on a plateau of the select_on metric. Default: 0.1.
        select_on: the valid metric that picks the best checkpoint, ends training (patience) and judges a plateau:
            auc (ranking, what a CTR model is deployed for) or logloss (what a scaling law fits; ``suan scale
            sweep``'s default). Default: auc.
        embedding_l2: λ of the L2 term λ/2·Σ‖w‖² on the feature embedding tables at embedding_l2_ref_batch
            samples per step (0 = off). Tuned on the valid splits of both real sets (0.005, 0.02, 0.05).
            Default: 0.02.
        embedding_l2_scope: table (every row, every step) or batch (the rows a batch looks up, weighted by
            1 / their chance of being in a batch: the same expected penalty at any batch size). Default: table.
        embedding_l2_ref_batch: 0 = λ at every step whatever the batch size; > 0 = λ holds at this many
            samples per step and a step of b samples uses λ·b/embedding_l2_ref_batch (the same
            regularisation per epoch at any batch size). Default: 1024.
        embedding_init_std: std of the normal every embedding table starts from (padding rows zero). Default: 1e-4.
        grad_clip: gradient-norm clip (0 = off). Default: 10.0.
        precision: 32-true or bf16-mixed. Default: 32-true.
        patience: early-stopping patience in epochs without a 1e-4 gain in the select_on metric. Default: 2.
        threads: torch intra-op threads (0 = one per core this process may use: CPU affinity and cgroup
            quota respected). Default: 0.
        seq_len: behaviours the model reads (0 = the grade's, capped by the data). Default: 0.
        data_fraction: nested deterministic share of the training rows (scaling sweeps). Default: 1.0.
        eval_fraction: nested deterministic share of the valid/test rows evaluated (cheaper sweeps on
            large data; the same rows for every run). Default: 1.0.
        bucket_by_length: training batches of similar history lengths (each shuffle buffer sorted by
            length, batch order shuffled), so batches of short histories skip their padding columns:
            faster where most histories are shorter than L. Default: False.
        dropout: Default: 0.0.
        backend: attention backend (auto, naive, torch, triton). Default: auto.
        mixer: registry name of the self-attention mixer ("" = the arch's own; see suan.mixers.registry).
            Default: "".
        local_window: LightSUAN local window k; for other mixers the field its options map it to (halonet and
            combiner block, span_search span, dhsa chunk, routing capacity, transnext window). Default: 8.
        dilation: LightSUAN dilation r. Default: 4.
        num_blocks: for routing its clusters, dhsa chunks_kept, span_search spans_kept, transnext
            learned_tokens. Default: 4.
        mixer_options: the mixer's own options by name, ``field=value`` pairs (e.g. ``clusters=8,capacity=16``
            for routing, ``window=16,dilation=8`` for sparse; the fields are the mixer's options class's, e.g.
            ``suan.mixers.routing.RoutingOptions``); a field also set by a count above is an error.
            Default: "".
        num_workers: DataLoader worker processes. Default: 0.
        mlflow_uri: tracking URI ("" = sqlite:///runs/mlflow/mlflow.db). Default: "".
        experiment: MLflow experiment name. Default: suan.
        resume: continue from the run folder's last checkpoint. Default: False.
        accelerator: auto, cpu or gpu. Default: auto.
        devices: devices per node. Default: 1.
        num_nodes: nodes (multi-node DDP under torchrun or SLURM). Default: 1.
        strategy: auto or ddp. Default: auto.
        negative_sampling_rate: share of negatives kept when the data sampled them, for calibration. Default: 1.0.
        position: attention position encoding: relative (learned bias), rope or none; "" = the mixer's own
            (none for BST's softmax, rope for softmax_rope, else relative). Default: "".
        head: last (last layer's candidate output) or histograph (attention over all layers' outputs). Default: last.
        layer_router: per layer, route each sample to full or sparse attention (suan, lightsuan). Default: False.
        ablate: deconstruction ablations kind:i,j[;kind:k], kind fixed | seqfree | stale_qk. Default: "".
        incremental: request-independent history tokens, so the model can also serve from a per-user state
            (needs a recurrent mixer, e.g. --mixer gated_deltanet; see suan.models.incremental). Default: False.
        wiring: unified block wiring (suan, lightsuan): authors (the authors' post-norm block: the gate mixes
            the residual stream with the cross output and adds the stream back) or branches (the dual gate mixes
            the self- and cross-attention outputs). Default: authors.
        candidate_in_head: the head also reads the candidate's own field embeddings beside its encoder
            output, as the authors' head does (sequence archs; DNN and DIN heads always do). Default: True.
        pool_history: the head also reads the mean of the last layer's history outputs, as FuxiCTR's BST
            pools its sequence outputs (sequence archs; DNN and DIN heads always do). Default: True.
        pool_inputs: the head also reads the mean of the history's input embeddings, the DNN head's summary
            (sequence archs; DNN and DIN heads always do; measured better on valid, P-ML and P-AZ:
            docs/RESULTS.md). Default: True.
        din_weights: DIN's pooling weights: unit (the activation unit's outputs as they are, the paper's) or
            softmax (normalised over the row's behaviours; the DNN's mean at the start; measured better on valid
            AUC, P-ML and P-AZ, 3 seeds: docs/RESULTS.md). DIN only. Default: softmax.
        test: evaluate the best checkpoint on the test split at the end (``suan tune`` turns it off: test
            is read once, for the report). Default: True.
        log_every_n_steps: Default: 20.
        progress: progress bar. Default: True.
    """

    data: str
    out: str
    model: Literal["suan", "lightsuan", "dnn", "din", "bst", "hstu"] = "suan"
    grade: int = 2
    seed: int = 0
    max_epochs: int = 50
    max_steps: int = -1
    batch_size: int = 1024
    lr: float = 1e-3
    embedding_lr: float = 0.0
    attention_bias_lr: float = 0.0
    weight_decay: float = 1e-5
    schedule: Literal["plateau", "cosine", "constant"] = "plateau"
    warmup_steps: int = 0
    warmup_fraction: float = 0.0
    plateau_factor: float = 0.1
    select_on: Literal["auc", "logloss"] = "auc"
    embedding_l2: float = 0.02
    embedding_l2_scope: Literal["table", "batch"] = "table"
    embedding_l2_ref_batch: int = 1024
    embedding_init_std: float = 1e-4
    grad_clip: float = 10.0
    precision: Literal["32-true", "bf16-mixed"] = "32-true"
    patience: int = 2
    threads: int = 0
    seq_len: int = 0
    data_fraction: float = 1.0
    eval_fraction: float = 1.0
    bucket_by_length: bool = False
    dropout: float = 0.0
    backend: str = "auto"
    mixer: str = ""
    local_window: int = 8
    dilation: int = 4
    num_blocks: int = 4
    mixer_options: tuple[str, ...] = ()
    num_workers: int = 0
    mlflow_uri: str = ""
    experiment: str = "suan"
    resume: bool = False
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    negative_sampling_rate: float = 1.0
    position: Literal["", "relative", "rope", "none"] = ""
    head: Literal["last", "histograph"] = "last"
    layer_router: bool = False
    ablate: str = ""
    incremental: bool = False
    wiring: Literal["branches", "authors"] = "authors"
    candidate_in_head: bool = True
    pool_history: bool = True
    pool_inputs: bool = True
    din_weights: Literal["unit", "softmax"] = "softmax"
    test: bool = True
    log_every_n_steps: int = 20
    progress: bool = True

    def validate(self) -> None:
        require(self.grade in GRADES, f"grade must be one of {sorted(GRADES)}")
        require(self.max_epochs >= 1 and self.batch_size >= 1, "max_epochs and batch_size must be >= 1")
        require(self.patience >= 1 and self.seq_len >= 0 and self.grad_clip >= 0, "bad patience/seq_len/grad_clip")
        require(self.threads >= 0, "threads must be >= 0 (0 = one per available core)")
        require_shares(self, "data_fraction", "eval_fraction")
        self.optim()
        if self.mixer:
            mixer_spec(self.mixer)  # an unknown name fails here, naming the registered ones
        self.mixer_settings()

    def mixer_settings(self):
        """The mixer's own options of this run (``suan.mixers.options.MixerOptions``): the generic counts
        through the mixer's map, then the fields named in ``mixer_options`` (validated, errors name fields)."""
        counts = {"local_window": self.local_window, "dilation": self.dilation, "num_blocks": self.num_blocks}
        options = mixer_options_from_counts(self.model, self.mixer, self.layer_router, **counts)
        return with_named_options(options, self.mixer_options, counts)

    def optim(self) -> OptimConfig:
        """The optimiser, schedule and embedding-regularisation settings of this run (validated)."""
        return OptimConfig(lr=self.lr, embedding_lr=self.embedding_lr, attention_bias_lr=self.attention_bias_lr,
                           weight_decay=self.weight_decay,
                           schedule=self.schedule, warmup_steps=self.warmup_steps,
                           warmup_fraction=self.warmup_fraction, plateau_factor=self.plateau_factor,
                           select_on=self.select_on,
                           embedding_l2=self.embedding_l2, embedding_l2_scope=self.embedding_l2_scope,
                           embedding_l2_ref_batch=self.embedding_l2_ref_batch)


# the recipe defaults of `suan train`: compare, sweep and distill train with exactly these unless told otherwise
TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainArgs)}


@dataclass(frozen=True, kw_only=True, slots=True)
class TuneArgs(Config):
    """Search training options with Optuna (TPE, pruning on per-epoch valid AUC); writes the best recipe.

    Args:
        data: prepared folder.
        out: tuning folder (trials/, best_recipe.yaml, report.md).
        space: YAML search space: ``option: {type: float|int|categorical, low, high, log, step, choices}``,
            an option being any ``suan train`` option or a mixer's own by dotted path (``mixer.clusters``)
            over any ``suan train`` option (e.g. ``lr: {type: float, low: 1e-4, high: 1e-2, log: true}``).
        base: YAML/JSON of fixed ``suan train`` options every trial starts from ("" = the defaults). Default: "".
        model: architecture (unless the base or the space sets it). Default: suan.
        grade: grade (unless the base or the space sets it). Default: 2.
        trials: trials this process runs (a resumed or shared study adds them to those it has). Default: 20.
        timeout: stop starting trials after this many seconds (0 = no limit). Default: 0.
        storage: Optuna storage URL; an RDB (SQLite file, PostgreSQL, MySQL) makes the study resumable and
            lets several processes or machines work on it at once ("" = sqlite:///<out>/optuna.db). Default: "".
        study: study name. Default: suan.
        seed: sampler seed (each process sharing a study should use its own). Default: 0.
        prune: stop unpromising trials early (median rule on per-epoch valid AUC). Default: True.
        mlflow_uri: tracking URI for the trials' runs ("" = a SQLite store under out). Default: "".
    """

    data: str
    out: str
    space: str
    base: str = ""
    model: Literal["suan", "lightsuan", "dnn", "din", "bst", "hstu"] = "suan"
    grade: int = 2
    trials: int = 20
    timeout: float = 0.0
    storage: str = ""
    study: str = "suan"
    seed: int = 0
    prune: bool = True
    mlflow_uri: str = ""

    def validate(self) -> None:
        require(self.trials >= 1 and self.timeout >= 0, "trials must be >= 1 and timeout >= 0")
        require(self.grade in GRADES, f"grade must be one of {sorted(GRADES)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class EvalArgs(Config):
    """Evaluate a trained run.

    Args:
        run: run folder of ``suan train``.
        split: valid or test. Default: test.
        data: prepared folder (default: the one the run was trained on). Default: "".
        batch_size: Default: 1024.
    """

    run: str
    split: Literal["valid", "test"] = "test"
    data: str = ""
    batch_size: int = 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class AnalyzeArgs(Config):
    """Record a trained run's attention: sinks, position bias, target attention → diagnostics.json, plots, report.md.

    Args:
        run: run folder of ``suan train`` (its ``model/`` is analysed).
        out: output folder (diagnostics.json, plots/, report.md).
        data: prepared folder (default: the one the run was trained on). Default: "".
        split: rows analysed from valid or test. Default: test.
        max_rows: rows whose attention is recorded. Default: 2000.
        users: sample users whose candidate attention is plotted. Default: 4.
        batch_size: Default: 256.
        tau: sink threshold in multiples of the uniform share. Default: 5.0.
        anchors: the first positions counted as anchors (primary sinks). Default: 1.
        calibrate: also evaluate valid/test AUC with training-free sink calibration. Default: False.
        sink_beta: calibration factor on sink attention (with --calibrate). Default: 0.5.
        eval_fraction: nested deterministic share of the valid/test rows the calibration is evaluated on
            (as in train; large evaluation sets). Default: 1.0.
    """

    run: str
    out: str
    data: str = ""
    split: Literal["valid", "test"] = "test"
    max_rows: int = 2000
    users: int = 4
    batch_size: int = 256
    tau: float = 5.0
    anchors: int = 1
    calibrate: bool = False
    sink_beta: float = 0.5
    eval_fraction: float = 1.0

    def validate(self) -> None:
        require(self.max_rows >= 1 and self.users >= 0 and self.batch_size >= 1, "bad max_rows/users/batch_size")
        require_shares(self, "eval_fraction")
        require(self.tau > 0 and self.anchors >= 0, "tau must be > 0 and anchors >= 0")
        require(0 <= self.sink_beta < 1, "sink_beta must be in [0, 1)")


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


# where a run lives and how it is executed and recorded: set once per compare/sweep, never per variant
_RUN_FIELDS = frozenset({"data", "out", "model", "grade", "seed", "resume", "mlflow_uri", "experiment", "progress",
                         "log_every_n_steps", "test", "accelerator", "devices", "num_nodes", "strategy", "threads",
                         "num_workers"})


def _variant_fields() -> dict:
    """Every other training field of ``suan train``, with its parser from the field's type (no hand-kept list)."""
    parsers = {bool: _flag, int: int, float: float, str: str}
    hints = typing.get_type_hints(TrainArgs)
    out = {}
    for f in dataclasses.fields(TrainArgs):
        hint = hints[f.name]
        base = type(typing.get_args(hint)[0]) if typing.get_origin(hint) is Literal else hint
        if f.name not in _RUN_FIELDS and base in parsers:
            out[f.name] = parsers[base]
    return out


VARIANT_FIELDS = _variant_fields()
MIXER_PATH = "mixer."


def fold_mixer_paths(values: dict) -> dict:
    """Training options with a mixer's own options addressed by dotted path folded into ``mixer_options``:
    ``{"mixer": "routing", "mixer.clusters": 8}`` → ``{"mixer": "routing", "mixer_options": ("clusters=8",)}``
    (variants, search spaces and recipes share this; the fields are checked against the mixer's options
    class when ``TrainArgs`` is built)."""
    paths = {k: v for k, v in values.items() if k.startswith(MIXER_PATH)}
    if not paths:
        return values
    rest = {k: v for k, v in values.items() if k not in paths}
    named = tuple(f"{k.removeprefix(MIXER_PATH)}={v}" for k, v in paths.items())
    return {**rest, "mixer_options": (*rest.get("mixer_options", ()), *named)}


def parse_variant(spec: str) -> tuple[str, dict]:
    """``"suan"`` → ``("suan", {})``; ``"suan:mixer=aaren/dropout=0.1"`` → ``("suan", {"mixer": "aaren",
    "dropout": 0.1})``; a mixer's own option by dotted path, ``"suan:mixer=routing/mixer.clusters=8"`` →
    ``{"mixer": "routing", "mixer_options": ("clusters=8",)}`` (checked against the mixer's options class
    when the run's arguments are built). Only the first ``:`` separates the arch (values such as
    ``fixed:0`` keep theirs)."""
    arch, _, rest = spec.partition(":")
    require(arch in ARCHS, f"model {spec!r}: architecture must be one of {ARCHS}")
    options: dict = {}
    for item in filter(None, rest.split("/")):
        key, sep, value = item.partition("=")
        if key.startswith(MIXER_PATH) and sep:
            options = fold_mixer_paths({**options, key: value})
            continue
        require(bool(sep) and key in VARIANT_FIELDS,
                f"model {spec!r}: {item!r} must be field=value with field among {sorted(VARIANT_FIELDS)} or "
                f"mixer.<field> of the mixer's options")
        try:
            options[key] = VARIANT_FIELDS[key](value)
        except ValueError as exc:
            raise ConfigError(f"model {spec!r}: {key}={value!r} is not a valid value") from exc
    return arch, options


@dataclass(frozen=True, kw_only=True, slots=True)
class CompareArgs(Config):
    """Train several architectures over several seeds on one dataset and tabulate mean ± sd.

    Args:
        data: prepared folder.
        out: folder of the runs and of comparison.json / comparison.md.
        models: architectures or variants ``arch:field=value[/field=value]`` where a field is any training
            option of ``suan train`` (model and recipe; not where the run lives or runs), e.g.
            ``suan:mixer=gated_deltanet``, ``suan:position=rope``, ``suan:ablate=fixed:0``,
            ``suan:wiring=branches/pool_history=false``, ``dnn:grad_clip=5``; a mixer's own option by
            dotted path, ``suan:mixer=routing/mixer.clusters=8``. Default: suan,dnn,din,bst,hstu.
        seeds: seeds per model. Default: 0,1,2.
        grade: grade of every model. Default: 1.
        max_epochs: as in train. Default: 50.
        batch_size: as in train. Default: 1024.
        lr: as in train. Default: 1e-3.
        patience: as in train. Default: 2.
        negative_sampling_rate: as in train. Default: 1.0.
        data_fraction: nested deterministic share of the training rows, as in train (long-sequence
            studies on small machines). Default: 1.0.
        eval_fraction: nested deterministic share of the valid/test rows evaluated, as in train. Default: 1.0.
        mlflow_uri: tracking URI ("" = a SQLite store under out). Default: "".
        train: train the (model, seed) runs not yet finished; ``--no-train`` tabulates the finished ones only,
            names the others, and pairs each model with the first over the seeds both have. Default: True.
    """

    data: str
    out: str
    models: tuple[str, ...] = ("suan", "dnn", "din", "bst", "hstu")
    seeds: tuple[int, ...] = (0, 1, 2)
    grade: int = 1
    max_epochs: int = TRAIN_DEFAULTS["max_epochs"]
    batch_size: int = TRAIN_DEFAULTS["batch_size"]
    lr: float = TRAIN_DEFAULTS["lr"]
    patience: int = TRAIN_DEFAULTS["patience"]
    negative_sampling_rate: float = 1.0
    data_fraction: float = 1.0
    eval_fraction: float = 1.0
    mlflow_uri: str = ""
    train: bool = True

    def validate(self) -> None:
        require(bool(self.models) and bool(self.seeds), "models and seeds must not be empty")
        require_shares(self, "data_fraction", "eval_fraction")
        for spec in self.models:
            arch, options = parse_variant(spec)
            try:  # the variant's model fields as a run would take them (mixer names and options checked)
                TrainArgs(data=self.data, out=self.out, model=arch, grade=self.grade, **options)
            except ConfigError as exc:
                raise ConfigError(f"model {spec!r}: {exc}") from exc
        require(self.grade in GRADES, f"grade must be one of {sorted(GRADES)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class DistillArgs(Config):
    """Distil a high-grade SUAN teacher into a low-grade LightSUAN student.

    Args:
        data: prepared folder.
        out: run folder (the student is saved as model/, the teacher as teacher_model/).
        teacher_grade: teacher grade. Default: 3.
        student_grade: student grade. Default: 1.
        teacher_model: teacher architecture. Default: suan.
        student_model: student architecture. Default: lightsuan.
        mode: online (joint training) or offline (frozen teacher from --teacher-run). Default: online.
        teacher_run: run folder of a trained teacher, or a model folder (offline mode). Default: "".
        temperature: t. Default: 2.0.
        weight: λ of the soft term (negative = t²). Default: -1.
        seed: Default: 0.
        max_epochs: as in train. Default: 50.
        batch_size: as in train. Default: 1024.
        lr: as in train. Default: 1e-3.
        patience: as in train. Default: 2.
        local_window: student's local window k. Default: 8.
        dilation: student's dilation r. Default: 4.
        mixer_options: the student mixer's own options by name, as in train (``window=16,dilation=8``).
            Default: "".
        mlflow_uri: Default: "".
        experiment: Default: distill.
        resume: Default: False.
        progress: Default: True.
    """

    data: str
    out: str
    teacher_grade: int = 3
    student_grade: int = 1
    teacher_model: Literal["suan", "lightsuan", "dnn", "din", "bst", "hstu"] = "suan"
    student_model: Literal["suan", "lightsuan", "dnn", "din", "bst", "hstu"] = "lightsuan"
    mode: Literal["online", "offline"] = "online"
    teacher_run: str = ""
    temperature: float = 2.0
    weight: float = -1.0
    seed: int = 0
    max_epochs: int = TRAIN_DEFAULTS["max_epochs"]
    batch_size: int = TRAIN_DEFAULTS["batch_size"]
    lr: float = TRAIN_DEFAULTS["lr"]
    patience: int = TRAIN_DEFAULTS["patience"]
    local_window: int = 8
    dilation: int = 4
    mixer_options: tuple[str, ...] = ()
    mlflow_uri: str = ""
    experiment: str = "distill"
    resume: bool = False
    progress: bool = True

    def validate(self) -> None:
        require(self.teacher_grade in GRADES and self.student_grade in GRADES, "grades must be in the grade table")
        require(self.mode == "online" or bool(self.teacher_run), "offline mode needs --teacher-run")
        require(self.temperature > 0, "temperature must be > 0")
        self.student_train_args()  # the student's settings are checked as train checks them

    def student_train_args(self) -> TrainArgs:
        """The student's run as plain training arguments (shared trainer set-up and outputs): every field of
        the same name passes through (no hand-kept copy), the student's arch and grade become the run's."""
        shared = {f.name for f in dataclasses.fields(TrainArgs)} & {f.name for f in dataclasses.fields(self)}
        return TrainArgs(model=self.student_model, grade=self.student_grade,
                         **{name: getattr(self, name) for name in shared})


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportArgs(Config):
    """Export a run's model to ONNX (parity-gated) and optionally register it in MLflow.

    Args:
        run: run folder of ``suan train`` or ``suan distill`` (its ``model/`` is exported).
        out: serving folder to write (model.onnx, feature map, vocabularies, serving.json).
        register: registered model name in the MLflow model registry ("" = do not register). Default: "".
        alias: registry alias to point at the new version (e.g. champion). Default: "".
        mlflow_uri: tracking URI ("" = sqlite:///runs/mlflow/mlflow.db). Default: "".
    """

    run: str
    out: str
    register: str = ""
    alias: str = ""
    mlflow_uri: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepArgs(Config):
    """Train a grid of grades x data fractions x seeds with the normal training pipeline (resumable).

    Args:
        data: prepared folder.
        out: sweep folder (manifest.json, runs/).
        grades: model grades. Default: 0,1,2.
        data_fractions: nested shares of the training rows. Default: 0.25,1.0.
        seeds: Default: 0.
        seq_lens: behaviours read, a sweep axis (0 = each grade's own L, capped by the data: prepare the data at
            the largest L you sweep). Default: 0.
        model: architecture. Default: suan.
        max_epochs: as in train. Default: 50.
        batch_size: as in train. Default: 1024.
        lr: as in train. Default: 1e-3.
        lrs: learning rates searched at every point, an axis (empty = ``lr`` only); the report keeps, per grade,
            length and data size, the rate with the lowest *valid* logloss and plots valid logloss against the
            rate per grade, so each grade is shown near its own optimum. Default: "".
        patience: as in train. Default: 2.
        schedule: as in train; cosine decays each point's lr over its own step budget (max_epochs of its rows),
            a schedule sized to the point, where plateau cuts the lr when that point's valid metric stalls.
            Default: plateau.
        warmup_steps: as in train (cosine, constant). Default: 0.
        warmup_fraction: as in train: warm-up as a share of each point's own step budget, so points of 10 and
            300 steps an epoch warm up alike. Default: 0.0.
        select_on: the valid metric that picks each point's checkpoint, ends it and judges its plateaus (as in
            train). logloss, the metric the laws fit: selected on AUC, the small-data points stopped while their
            valid logloss was still falling (the demo: 1/4 of the data ended at 0.590, 0.529 two epochs later),
            so their logloss measured where training stopped, not the data. Default: logloss.
        eval_fraction: nested share of the valid/test rows evaluated at every point. Default: 1.0.
        bucket_by_length: length-bucketed training batches at every point (as in train). Default: False.
        mlflow_uri: tracking URI ("" = a SQLite store under out). Default: "".
        storage: Optuna RDB URL shared by several processes or machines running this same command: each takes
            the next untaken grid point (Optuna's grid sampler) until the grid is done ("" = one process walks
            the grid). Default: "".
        study: the shared study's name ("" = the sweep folder's name). Default: "".
    """

    data: str
    out: str
    grades: tuple[int, ...] = (0, 1, 2)
    data_fractions: tuple[float, ...] = (0.25, 1.0)
    seeds: tuple[int, ...] = (0,)
    seq_lens: tuple[int, ...] = (0,)
    model: Literal["suan", "lightsuan", "dnn", "din", "bst", "hstu"] = "suan"
    max_epochs: int = TRAIN_DEFAULTS["max_epochs"]
    batch_size: int = TRAIN_DEFAULTS["batch_size"]
    lr: float = TRAIN_DEFAULTS["lr"]
    lrs: tuple[float, ...] = ()
    patience: int = TRAIN_DEFAULTS["patience"]
    schedule: Literal["plateau", "cosine", "constant"] = TRAIN_DEFAULTS["schedule"]
    warmup_steps: int = TRAIN_DEFAULTS["warmup_steps"]
    warmup_fraction: float = TRAIN_DEFAULTS["warmup_fraction"]
    select_on: Literal["auc", "logloss"] = "logloss"
    eval_fraction: float = 1.0
    bucket_by_length: bool = False
    mlflow_uri: str = ""
    storage: str = ""
    study: str = ""

    def validate(self) -> None:
        require_shares(self, "eval_fraction")
        require(all(g in GRADES for g in self.grades), f"grades must be among {sorted(GRADES)}")
        require(all(0 < f <= 1 for f in self.data_fractions), "data fractions must be in (0, 1]")
        require(bool(self.grades) and bool(self.data_fractions) and bool(self.seeds) and bool(self.seq_lens),
                "empty grid")
        require(all(n >= 0 for n in self.seq_lens), "seq_lens must be >= 0 (0 = the grade's own)")
        require(all(r > 0 for r in self.lrs), "lrs must be > 0")
        # the schedule every point will train with, checked once here (OptimConfig's own checks) rather than
        # failing at each point
        OptimConfig(lr=self.lr, schedule=self.schedule, warmup_steps=self.warmup_steps,
                    warmup_fraction=self.warmup_fraction, select_on=self.select_on)


@dataclass(frozen=True, kw_only=True, slots=True)
class ScaleFitArgs(Config):
    """Fit power laws to a sweep and write scaling_fit.json, PNG plots and a Markdown report.

    Args:
        sweep: sweep folder (``suan scale sweep`` output).
        out: output folder ("" = the sweep folder). Default: "".
        bootstrap: bootstrap resamples for confidence intervals. Default: 200.
    """

    sweep: str
    out: str = ""
    bootstrap: int = 200


@dataclass(frozen=True, kw_only=True, slots=True)
class ScaleReportArgs(Config):
    """Print (and rewrite) the Markdown report of a fitted sweep.

    Args:
        sweep: sweep folder.
    """

    sweep: str = dataclasses.field(metadata={"positional": True})


@dataclass(frozen=True, kw_only=True, slots=True)
class ServeArgs(Config):
    """Serve an exported model over HTTP (FastAPI + uvicorn + ONNX Runtime; no torch at request time).

    Args:
        model: serving folder (``suan export --out``), ``models:/name/version`` or ``models:/name@alias``.
        host: interface to bind (loopback by default: put a proxy in front to expose it). Default: 127.0.0.1.
        port: Default: 8000.
        workers: uvicorn worker processes (each loads the model before it accepts connections and keeps its own
            metrics). Default: 1.
        threads: ONNX Runtime intra-op threads per request. Default: 1.
        concurrency: requests scored at once per worker, the rest wait in arrival order (0 = CPU cores //
            threads). Default: 0.
        device: auto (CUDA when onnxruntime offers it), cpu or cuda. Default: auto.
        max_candidates: most candidates per request (more → 400). Default: 1000.
        max_history: most raw history entries per request and events per append (more → 400; beyond L is
            truncated). Default: 1000.
        max_body_bytes: largest request body (more → 413). Default: 4194304.
        max_string: longest raw value or field name in characters (more → 422). Default: 256.
        max_fields: most fields per mapping: user, context, a history entry, a candidate (more → 422). Default: 64.
        queue: requests waiting for a scoring slot; one more → 503 with Retry-After. Default: 64.
        request_timeout: seconds from admission to answer (later → 504). Default: 10.
        header_timeout: seconds a connection may take to send a request's headers (then closed). Default: 10.
        body_timeout: seconds the server waits for each part of a body (then 408). Default: 10.
        max_connections: open connections and in-flight requests per worker (more → 503). Default: 512.
        model_roots: folders /admin/reload may load from ("" = the folder holding --model). Default: "".
        watch_seconds: poll the model folder and hot-reload when it is replaced (0 = off). Default: 0.
        max_users: most users whose incremental state is cached per worker (stateful /v1/users/... path of
            an incremental model; least recently used evicted first). Default: 10000.
        mlflow_uri: tracking URI of the model registry ("" = $MLFLOW_TRACKING_URI; a models:/ --model alone falls
            back to sqlite:///runs/mlflow/mlflow.db). Without one, /admin/reload refuses models:/ URIs. Default: "".
        access_log: log every request. Default: False.
        log_level: uvicorn log level. Default: info.
    """

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int = 1
    concurrency: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_candidates: int = 1000
    max_history: int = 1000
    max_body_bytes: int = 4 * 1024 * 1024
    max_string: int = 256
    max_fields: int = 64
    queue: int = 64
    request_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 512
    model_roots: tuple[str, ...] = ()
    watch_seconds: float = 0.0
    max_users: int = 10_000
    mlflow_uri: str = ""
    access_log: bool = False
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    def validate(self) -> None:
        require(bool(self.model), "--model is required: a serving folder or models:/name/version")
        require(0 <= self.port <= 65535, "port must be in [0, 65535]")
        require(self.workers >= 1 and self.threads >= 1, "workers and threads must be >= 1")
        require(self.concurrency >= 0, "concurrency must be >= 0 (0 = CPU cores // threads)")
        require(self.max_candidates >= 1 and self.max_history >= 0, "max_candidates >= 1, max_history >= 0")
        require(self.max_body_bytes >= 1024 and self.watch_seconds >= 0, "max_body_bytes >= 1024, watch_seconds >= 0")
        require(self.max_users >= 1, "max_users must be >= 1")
