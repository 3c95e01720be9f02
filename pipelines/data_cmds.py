"""``suan data synth | prepare | describe``: typed configs and the functions that run them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from features.prepare import prepare
from features.protocols import PROTOCOLS
from features.rawlog import RawLog
from features.sources.amazon import load_amazon
from features.sources.events import load_events
from features.sources.movielens import load_movielens
from features.sources.synthetic import SynthConfig, generate, load_synthetic
from features.stats import describe
from suan.utils.config import Config, require

SOURCES = ("synthetic", "movielens-100k", "amazon-5core", "events")
DEFAULT_PROTOCOL = {"synthetic": "time-split", "movielens-100k": "P-ML", "amazon-5core": "P-AZ",
                    "events": "time-split"}


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
    users: str = ""
    user_fields: tuple[str, ...] = ()
    progress: bool = True

    def validate(self) -> None:
        require(self.source in SOURCES, f"source must be one of {SOURCES}")
        require(not self.protocol or self.protocol in PROTOCOLS, f"protocol must be one of {sorted(PROTOCOLS)}")
        require(self.max_seq_len >= 1 and self.min_count >= 1 and self.shard_rows >= 1,
                "max_seq_len, min_count and shard_rows must be >= 1")
        require(self.negatives >= -1, "negatives must be >= 0 (or -1 for the protocol's own)")


def load_source(args: PrepareArgs) -> RawLog:
    if args.source == "synthetic":
        return load_synthetic(args.input)
    if args.source == "movielens-100k":
        return load_movielens(args.input)
    if args.source == "amazon-5core":
        return load_amazon(args.input)
    return load_events(args.input, args.item_fields, args.event_fields, args.context_fields,
                       args.users or None, args.user_fields)


def run_prepare(args: PrepareArgs) -> dict:
    proto = PROTOCOLS[args.protocol or DEFAULT_PROTOCOL[args.source]]
    changes = {"max_seq_len": args.max_seq_len, "min_count": args.min_count}
    if args.negatives >= 0:
        changes["negatives"] = args.negatives
    proto = proto.replace(**changes)
    stats = prepare(load_source(args), proto, args.out, shard_rows=args.shard_rows, progress=args.progress)
    args.save(Path(args.out) / "prepare_config.yaml")
    print(describe(args.out))
    return stats


def run_synth(args: SynthArgs) -> dict:
    summary = generate(args.synth_config(), args.out)
    print(json.dumps(summary, indent=2))
    return summary


@dataclass(frozen=True, kw_only=True, slots=True)
class DescribeArgs(Config):
    """Print the statistics and fields of a prepared folder.

    Args:
        data: prepared folder.
    """

    data: str = dataclasses.field(metadata={"positional": True})


def run_describe(args: DescribeArgs) -> str:
    text = describe(args.data)
    print(text)
    return text
