"""Model configs and the one named grade table that sizes every model.

A grade scales layers, width, heads and sequence length together; ``ModelConfig.from_grade`` is
the only place grades turn into numbers, and the resolved numbers are what gets saved.

A grade's width is per feature field (``embed_dim``), as in the authors' code: a behaviour token
concatenates one ``embed_dim`` embedding per behaviour field, so D = embed_dim × fields (MovieLens:
item, genre, rating → 3 × embed_dim; Amazon: item → embed_dim). Grades 1–2 give every field the 32
dimensions and read the 50 behaviours the peer baselines use; the largest read 1,000 (the paper's
longest), where the data has them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from suan.mixers.options import MixerOptions
from suan.ops.common.backend import BACKENDS
from suan.utils.config import Config, ConfigError, require

ARCHS = ("suan", "lightsuan", "dnn", "din", "bst", "hstu")
DEFAULT_MIXER = {"suan": "softmax_rel", "lightsuan": "sparse", "bst": "softmax", "hstu": "hstu", "dnn": "", "din": ""}
POSITIONS = ("relative", "rope", "none")
HEADS = ("last", "histograph")
ABLATIONS = ("fixed", "seqfree", "stale_qk")
WIRINGS = ("branches", "authors")
DIN_WEIGHTS = ("unit", "softmax")
# ModelConfig's schema version, saved with every config. Version 1 (no ``version`` key) predates the fields
# below: a saved config that does not name them meant these values, not today's defaults. Version 2 could
# hold a count (local_window, dilation, num_blocks) its mixer never read; version 3 refused one; version 4
# nests the mixer's own options (``mixer_options``) instead of those three generic counts.
MODEL_CONFIG_VERSION = 4
V1_MEANING = {"wiring": "branches", "candidate_in_head": False, "pool_history": False, "embedding_init_std": 1.0}
# fields added to version 4 whose default later changed: a saved config without one trained with this value
ABSENT_MEANING = {"pool_inputs": False}
# the generic counts of the command line (and of configs before version 4), with their defaults
MIXER_COUNTS = {"local_window": 8, "dilation": 4, "num_blocks": 4}
TRITON_NEEDS_NO_PROBS = ("backend triton: sink calibration and the fixed/seqfree ablations compute explicit attention "
                         "probabilities, which have no Triton kernel; use backend auto or torch")


@dataclass(frozen=True, kw_only=True, slots=True)
class Grade:
    """One row of the grade table: embed_dim is the width of each field's embedding."""

    num_layers: int
    embed_dim: int
    num_heads: int
    seq_len: int
    head_widths: tuple[int, ...]


GRADES: dict[int, Grade] = {
    # grade 0 narrower (its depth, heads, L and head; widths ~1.6x apart, so encoder parameters ~2.5x apart):
    # smaller points below grade 0 for size axes (on a CPU they train nearly as long as grade 0: per-batch costs)
    -3: Grade(num_layers=1, embed_dim=4, num_heads=1, seq_len=20, head_widths=(64, 32)),
    -2: Grade(num_layers=1, embed_dim=6, num_heads=1, seq_len=20, head_widths=(64, 32)),
    -1: Grade(num_layers=1, embed_dim=10, num_heads=1, seq_len=20, head_widths=(64, 32)),
    0: Grade(num_layers=1, embed_dim=16, num_heads=1, seq_len=20, head_widths=(64, 32)),
    1: Grade(num_layers=1, embed_dim=32, num_heads=2, seq_len=50, head_widths=(128, 64)),
    2: Grade(num_layers=2, embed_dim=32, num_heads=2, seq_len=50, head_widths=(256, 128)),
    3: Grade(num_layers=2, embed_dim=48, num_heads=4, seq_len=100, head_widths=(256, 128)),
    4: Grade(num_layers=3, embed_dim=64, num_heads=4, seq_len=100, head_widths=(512, 256)),
    5: Grade(num_layers=4, embed_dim=96, num_heads=4, seq_len=200, head_widths=(512, 256)),
    6: Grade(num_layers=6, embed_dim=128, num_heads=8, seq_len=500, head_widths=(1024, 512)),
    7: Grade(num_layers=8, embed_dim=192, num_heads=8, seq_len=1000, head_widths=(1024, 512)),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig(Config):
    """A CTR model, fully resolved.

    Args:
        arch: ``suan`` | ``lightsuan`` | ``dnn`` | ``din`` | ``bst`` | ``hstu``.
        grade: the row of :data:`GRADES` the sizes came from.
        num_layers: stacked blocks.
        d_model: D, the behaviour-token width.
        num_heads: H.
        seq_len: behaviours kept (most recent); the candidate is one more token.
        head_widths: hidden widths of the MLP head.
        mixer: registry name of the self-attention mixer. Default: the arch's own.
        ffn_mult: SwiGLU / FFN width multiplier. Default: 3.
        context_dim: embedding width of context fields (the grade's embed_dim). Default: 16.
        max_attn_len: local attention window, 0 = unlimited. Default: 0.
        mixer_options: the mixer's own options, an instance of its ``Mixer.options`` class (LightSUAN's
            ``SparseOptions(window, dilation)``, routing's ``RoutingOptions(clusters, capacity)``, ...; a
            layer router's are its sparse branch's). Given as a mapping it is built into that class
            (unknown fields are an error naming the known ones); the base :class:`MixerOptions` means the
            mixer's defaults. Default: the mixer's defaults.
        backend: attention backend. Default: ``auto``.
        dropout: dropout on block outputs. Default: 0.0.
        negative_sampling_rate: share of true negatives kept when the data was made by sampling
            negatives; scores are calibrated for it (1.0 = no sampling). Default: 1.0.
        position: ``relative`` (learned Toeplitz bias) | ``rope`` (rotary q/k) | ``none``; "" = what the
            mixer implies (``none`` for BST's ``softmax``, ``rope`` for ``softmax_rope``, else ``relative``),
            resolved on creation. A position its mixer's name contradicts is an error. Default: "".
        head: ``last`` (the last layer's candidate output) | ``histograph`` (attention over the candidate's
            outputs of every layer, then over the tokens). Default: last.
        layer_router: per layer, a router picks full softmax or LightSUAN sparse attention per sample
            (suan/lightsuan only). Default: False.
        ablate: deconstruction ablations, ``kind:i,j[;kind:k]`` with kind ``fixed`` | ``seqfree`` |
            ``stale_qk`` applied to the listed layers ("" = none). Default: "".
        sink_beta: inference-time sink calibration: attention to sink keys is scaled by beta and the
            removed mass moved to the other keys (1.0 = off). Default: 1.0.
        sink_tau: a history key is a sink when its mean attention from history queries is >= tau / n.
            Default: 5.0.
        incremental: history tokens that do not depend on the request, so a per-user state can be built one
            behaviour at a time (``suan.models.incremental``): positions count from the first behaviour
            (capped at seq_len), the time feature is the log gap to the previous behaviour (a candidate's:
            to the last behaviour), the whole history is read (no cut to seq_len) and SUAN's dual gate pools
            the history causally. Needs a sequence arch, a recurrent mixer and head ``last``, no layer
            router. Default: False.
        wiring: the unified block's wiring (suan, lightsuan; other archs have no unified block): ``authors``
            (the authors' post-norm block: the gate mixes the residual stream with the cross output and the
            stream is added back, so self-attention is never switched off) or ``branches`` (pre-norm; the dual
            gate mixes the self- and cross-attention outputs). Default: authors (measured better on valid
            AUC on P-ML, 3 seeds, and P-AZ: docs/RESULTS.md).
        candidate_in_head: the head also reads the candidate's own field embeddings beside its encoder
            output, as the authors' head does (sequence archs; the DNN and DIN heads always read them).
            Default: True.
        pool_history: the head also reads the mean of the last layer's history outputs (one vector per row,
            the same for every candidate), as FuxiCTR's BST pools its sequence outputs (sequence archs; the
            DNN and DIN heads always read a pooled history; incremental models keep its running sum in the
            per-user state). Default: True.
        pool_inputs: the head also reads the mean of the history's input embeddings (before any block), the
            summary the DNN head reads; on P-AZ the sequence models trailed the DNN only on 3-5-behaviour rows,
            where the last layer's outputs are a noisier summary (sequence archs; the DNN and DIN heads always
            read their own pooling of the input embeddings, so it changes nothing there; incremental models keep
            its running sum). Default: True (measured on valid AUC, P-ML and P-AZ, 3 seeds: docs/RESULTS.md).
            A config saved before the option existed loads as False, the model it was.
        din_weights: how DIN turns its activation unit's outputs into pooling weights over the history: ``unit``
            (the paper's: used as they are, unnormalised, so the pooled vector keeps the intensity of interest)
            or ``softmax`` (normalised over the row's behaviours, as DIN's released code can: at the start, when
            the unit's outputs are all alike, the pooled vector is the DNN's mean). DIN only (other archs keep the
            default). Default: softmax (measured better on valid AUC on P-ML and P-AZ, 3 seeds; the paper's weights
            start below popularity ranking on P-AZ: docs/RESULTS.md). A DIN saved before the option loads as unit.
        embedding_init_std: every embedding table (features, positions, time buckets) starts N(0, std²),
            padding rows zero; dense layers keep PyTorch's default (Kaiming-uniform, weights and biases in
            ±1/√fan_in). Default: 1e-4.
        chunk_by_length: in training, encode a batch's rows in chunks of similar history length, each
            at its own width (``suan.models.sequence.length_chunks``): the same outputs and gradients as
            one padded pass, fewer tokens when lengths differ (sequence archs). Default: True.
        version: the schema version this config was written with (older ones are upgraded on load, see
            :meth:`from_dict`). Default: 4.
    """

    arch: Literal["suan", "lightsuan", "dnn", "din", "bst", "hstu"]
    grade: int
    num_layers: int
    d_model: int
    num_heads: int
    seq_len: int
    head_widths: tuple[int, ...]
    mixer: str = ""
    ffn_mult: int = 3
    context_dim: int = 16
    max_attn_len: int = 0
    mixer_options: MixerOptions = field(default_factory=MixerOptions)
    backend: str = "auto"
    dropout: float = 0.0
    negative_sampling_rate: float = 1.0
    position: Literal["", "relative", "rope", "none"] = ""
    head: Literal["last", "histograph"] = "last"
    layer_router: bool = False
    ablate: str = ""
    sink_beta: float = 1.0
    sink_tau: float = 5.0
    incremental: bool = False
    chunk_by_length: bool = True
    embedding_init_std: float = 1e-4
    wiring: Literal["branches", "authors"] = "authors"
    candidate_in_head: bool = True
    pool_history: bool = True
    pool_inputs: bool = True
    din_weights: Literal["unit", "softmax"] = "softmax"
    version: int = MODEL_CONFIG_VERSION

    def __post_init__(self) -> None:
        # the mixer's options as its own class (a mapping or the base stand for it), then validate
        require(self.arch in ARCHS, f"arch must be one of {ARCHS}")
        own = mixer_options_class(self.arch, self.mixer, self.layer_router)
        given = self.mixer_options
        if isinstance(given, dict):
            given = own.from_dict(given)
        elif type(given) is not own and given == type(given)():  # defaults of another mixer (e.g. after replace)
            given = own()
        object.__setattr__(self, "mixer_options", own.own(given, f"{self.arch} with mixer {self.mixer_name!r}"))
        object.__setattr__(self, "position", self._resolved_position())
        self.validate()

    def _resolved_position(self) -> str:
        """The position encoding: the one given, else the one the mixer's name implies, else relative."""
        if self.arch in ("dnn", "din"):
            return self.position or "relative"
        spec = mixer_spec(self.mixer_name)
        require(not (spec.positions and self.position and self.position not in spec.positions),
                f"mixer {self.mixer_name!r} runs position {' or '.join(spec.positions)}: position {self.position!r} "
                f"contradicts it (leave position unset, or pick a mixer without a fixed encoding, e.g. softmax_rel)")
        return self.position or spec.position or "relative"

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Rebuild a saved config, upgrading an older schema so that an old model loads as it was trained."""
        if isinstance(data, dict) and data.get("version", 1) < MODEL_CONFIG_VERSION:
            data = _upgrade(data)
        if isinstance(data, dict):
            data = {**ABSENT_MEANING, **data}
            if data.get("arch") == "din":
                data.setdefault("din_weights", "unit")  # a DIN saved before the option had the paper's weights
            else:
                data.pop("din_weights", None)  # read by DIN only: what another arch saved there never mattered
        if not isinstance(data, dict) or not isinstance(data.get("mixer_options", {}), dict):
            return Config.from_dict.__func__(cls, data)  # the base names what is wrong
        # the options' class depends on the mixer: built in __post_init__ from the mapping
        options = data.get("mixer_options", {})
        return Config.from_dict.__func__(cls, {k: v for k, v in data.items() if k != "mixer_options"}).replace(
            mixer_options=options)

    def validate(self) -> None:
        require(self.arch in ARCHS, f"arch must be one of {ARCHS}")
        require(self.num_layers >= 1 and self.seq_len >= 1, "num_layers and seq_len must be >= 1")
        require(self.d_model % self.num_heads == 0, "d_model must divide by num_heads")
        require(self.d_model >= 4, "d_model must be >= 4")
        require(self.backend in BACKENDS, f"backend must be one of {BACKENDS}")
        require(0 <= self.dropout < 1, "dropout must be in [0, 1)")
        require(0 < self.negative_sampling_rate <= 1, "negative_sampling_rate must be in (0, 1]")
        require(self.embedding_init_std > 0, "embedding_init_std must be > 0")
        require(self.wiring in WIRINGS, f"wiring must be one of {WIRINGS}")
        require(self.version == MODEL_CONFIG_VERSION,
                f"model config version {self.version} is not {MODEL_CONFIG_VERSION}: written by another SUAN release")
        self._validate_options()

    def _validate_options(self) -> None:
        require(self.position in POSITIONS, f"position must be one of {POSITIONS}")
        require(self.head in HEADS, f"head must be one of {HEADS}")
        require(0 <= self.sink_beta <= 1 and self.sink_tau > 0, "sink_beta must be in [0, 1] and sink_tau > 0")
        ablations = parse_ablate(self.ablate, self.num_layers)
        sequence = self.arch not in ("dnn", "din")
        require(sequence or (self.head == "last" and not self.layer_router and not ablations),
                "head, layer_router and ablate need a sequence arch (suan, lightsuan, bst, hstu)")
        require(self.din_weights in DIN_WEIGHTS, f"din_weights must be one of {DIN_WEIGHTS}")
        require(self.arch == "din" or self.din_weights == "softmax", "din_weights is DIN's option: other archs keep "
                "its default")
        spec = mixer_spec(self.mixer_name) if sequence else None
        require(spec is None or spec.softmax or (self.position == "relative" and not ablations and self.sink_beta == 1),
                f"position, ablate and sink_beta need a softmax mixer {softmax_mixers()}")
        require(not self.layer_router or self.arch in ("suan", "lightsuan"), "layer_router needs suan or lightsuan")
        require(not (self.layer_router and ablations), "layer_router and ablate do not combine")
        require(self.backend != "triton" or (self.sink_beta == 1 and not {"fixed", "seqfree"} & set(ablations.values())),
                TRITON_NEEDS_NO_PROBS)
        require(self.position != "rope" or (self.d_model // self.num_heads) % 2 == 0, "rope needs an even head dim")
        if self.incremental:
            self._validate_incremental(sequence)

    def _validate_incremental(self, sequence: bool) -> None:
        from suan.mixers.registry import mixer_names

        spec = mixer_spec(self.mixer_name) if sequence else None
        require(spec is not None and spec.recurrent,
                f"incremental needs a sequence arch and a recurrent mixer {sorted(mixer_names(recurrent=True))}, "
                f"got {self.mixer_name!r}")
        require(self.head == "last" and not self.layer_router, "incremental needs head 'last' and no layer_router")

    @classmethod
    def from_grade(cls, arch: str, grade: int, seq_fields: int = 1, **overrides) -> ModelConfig:
        """The config of ``arch`` at ``grade`` (overrides applied after the table).

        Args:
            arch: architecture.
            grade: row of :data:`GRADES`.
            seq_fields: behaviour fields of the data (``FeatureMap.by_role(Role.SEQ)``): D = embed_dim × this.
            overrides: fields set after the table.
        """
        require(grade in GRADES, f"grade must be one of {sorted(GRADES)}")
        require(seq_fields >= 1, "seq_fields must be >= 1")
        g = GRADES[grade]
        values = dict(arch=arch, grade=grade, num_layers=g.num_layers, d_model=g.embed_dim * seq_fields,
                      num_heads=g.num_heads, seq_len=g.seq_len, head_widths=g.head_widths, context_dim=g.embed_dim,
                      mixer=DEFAULT_MIXER.get(arch, ""))
        values.update(overrides)
        return cls(**values)

    @property
    def mixer_name(self) -> str:
        return self.mixer or DEFAULT_MIXER[self.arch]


def _upgrade(data: dict) -> dict:
    """A saved config of an older schema as the current one, meaning what it meant when it was trained."""
    data = {**V1_MEANING, **data} if "version" not in data else dict(data)
    arch, mixer, router = data.get("arch", ""), data.get("mixer", ""), data.get("layer_router", False)
    require(arch in ARCHS, f"arch must be one of {ARCHS}")
    counts = {name: data.pop(name) for name in MIXER_COUNTS if name in data}
    # versions 1-3 saved "relative" (the old default) where the mixer's name overrode it: save what ran
    name = mixer or DEFAULT_MIXER.get(arch, "")
    spec = mixer_spec(name) if name else None
    if spec is not None and spec.positions and "relative" not in spec.positions \
            and data.get("position", "relative") == "relative":
        data["position"] = spec.position
    # versions 1-2: a count the mixer never read had no effect on the trained model; versions 1-3: the read
    # counts become the mixer's own options
    reads = mixer_reads(arch, mixer, router)
    counts = {name: value for name, value in counts.items() if name in reads}
    options = mixer_options_class(arch, mixer, router).from_counts(**{**MIXER_COUNTS, **counts})
    return {**data, "mixer_options": options.to_dict(), "version": MODEL_CONFIG_VERSION}


def mixer_options_from_counts(arch: str, mixer: str = "", layer_router: bool = False, **counts: int) -> MixerOptions:
    """The mixer's own options from the command line's generic counts (``local_window``, ``dilation``,
    ``num_blocks``; omitted = their defaults). A count set away from its default that the mixer does not read
    is an error, never ignored silently; the options class validates the values (a block of 0, ...)."""
    require(set(counts) <= set(MIXER_COUNTS), f"counts are {sorted(MIXER_COUNTS)}, got {sorted(counts)}")
    reads = mixer_reads(arch, mixer, layer_router)
    name = mixer or DEFAULT_MIXER.get(arch, "")
    read = ", ".join(f"{k} as its {v}" for k, v in reads.items()) or "none of local_window, dilation, num_blocks"
    for count, value in counts.items():
        require(value == MIXER_COUNTS[count] or count in reads,
                f"{arch} with mixer {name!r} does not read {count} (it reads {read}); leave it at "
                f"{MIXER_COUNTS[count]}")
    return mixer_options_class(arch, mixer, layer_router).from_counts(**{**MIXER_COUNTS, **counts})


def with_named_options(options: MixerOptions, pairs: tuple[str, ...], counts: dict[str, int]) -> MixerOptions:
    """``options`` with the fields named in ``pairs`` (``("clusters=8", "capacity=16")``) set, parsed by the
    field's type. An unknown or repeated field, a bad value, or a field its count (in ``counts``, the
    generic counts as the user gave them) also set away from its default is an error naming the field."""
    own = type(options)
    known, values = own.field_names(), {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        require(bool(sep) and key in known and key not in values,
                f"mixer option {pair!r}: must be field=value, each field once, with field among {known} "
                f"({own.__name__})")
        count = own.counts.get(key, "")
        require(counts.get(count, MIXER_COUNTS.get(count)) == MIXER_COUNTS.get(count),
                f"mixer option {key} is also set by {count}={counts.get(count)}: give it one way")
        kind = typing.get_type_hints(own)[key]
        try:
            values[key] = kind(value)
        except ValueError as exc:
            raise ConfigError(f"mixer option {pair!r}: {value!r} is not of type {kind.__name__}") from exc
    return options.replace(**values) if values else options


def mixer_reads(arch: str, mixer: str, layer_router: bool) -> dict[str, str]:
    """The generic counts (``MIXER_COUNTS``) a model reads, each with the field of its mixer's options it
    sets (:func:`mixer_options_class`), e.g. ``{"local_window": "block"}``."""
    return mixer_options_class(arch, mixer, layer_router).reads()


def mixer_options_class(arch: str, mixer: str, layer_router: bool) -> type:
    """The options dataclass a model's mixer takes (``Mixer.options``): a layer router's is LightSUAN's
    sparse branch's (its full branch has none); DNN and DIN have no mixer (the base, no fields)."""
    if arch in ("dnn", "din"):
        return MixerOptions
    return mixer_spec("sparse" if layer_router else (mixer or DEFAULT_MIXER.get(arch, ""))).cls.options


def mixer_spec(name: str):
    """The registry entry of mixer ``name``, or a :class:`ConfigError` naming the registered ones."""
    # imported here: the registry imports every mixer (torch), the config stays cheap to import
    from suan.mixers.registry import MIXERS

    require(name in MIXERS, f"unknown mixer {name!r}; choose one of {sorted(MIXERS)}")
    return MIXERS[name]


def softmax_mixers() -> list[str]:
    """Mixers that honour position encodings, the ablations and sink calibration (a registry attribute)."""
    from suan.mixers.registry import mixer_names

    return sorted(mixer_names(softmax=True))


def parse_ablate(text: str, num_layers: int) -> dict[int, str]:
    """``"fixed:0,1;stale_qk:2"`` → ``{0: "fixed", 1: "fixed", 2: "stale_qk"}`` (validated).

    Args:
        text: ``kind:i,j`` groups joined by ``;``; "" = no ablation.
        num_layers: the model's layers (indices must be below it).

    Returns:
        layer index → ablation kind.
    """
    out: dict[int, str] = {}
    for group in filter(None, (g.strip() for g in text.split(";"))):
        kind, _, layers = group.partition(":")
        require(kind.strip() in ABLATIONS, f"ablate kind {kind.strip()!r} must be one of {ABLATIONS}")
        for item in layers.split(","):
            require(item.strip().isdigit(), f"ablate {group!r}: layer indices must be integers")
            i = int(item)
            require(i < num_layers and i not in out, f"ablate {group!r}: layer {i} is out of range or repeated")
            out[i] = kind.strip()
    return out
