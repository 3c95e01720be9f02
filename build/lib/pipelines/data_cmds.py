"""``suan data synth | prepare | describe``: typed configs and the functions that run them."""

from __future__ import annotations

import json
from pathlib import Path

from features.prepare import prepare
from features.protocols import PROTOCOLS
from features.rawlog import RawLog
from features.sources.amazon import load_amazon
from features.sources.events import load_events
from features.sources.movielens import load_movielens
from features.sources.synthetic import generate, load_synthetic
from features.stats import describe
from pipelines.args import DescribeArgs, PrepareArgs, SynthArgs

DEFAULT_PROTOCOL = {"synthetic": "time-split", "movielens-100k": "P-ML", "amazon-5core": "P-AZ",
                    "events": "time-split"}


def load_source(args: PrepareArgs) -> RawLog:
    if args.source == "synthetic":
        return load_synthetic(args.input)
    if args.source == "movielens-100k":
        return load_movielens(args.input)
    if args.source == "amazon-5core":
        return load_amazon(args.input, args.name)
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


def run_describe(args: DescribeArgs) -> str:
    text = describe(args.data)
    print(text)
    return text
