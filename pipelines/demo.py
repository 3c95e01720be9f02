"""``suan demo``: the main job end to end on the embedded synthetic default.

Stage 1 (foundation): generate the synthetic log, prepare it under the time-split protocol, print
its statistics and one batch's shapes. Later stages add training, scaling, distillation and serving.
"""

from __future__ import annotations

from pathlib import Path

from features.prepare import prepare
from features.protocols import PROTOCOLS
from features.sources.synthetic import SynthConfig, generate, load_synthetic
from features.stats import describe
from pipelines.args import DemoArgs


def run_demo(args: DemoArgs) -> dict:
    out = Path(args.out)
    print(f"[1/2] generating synthetic events → {out / 'synthetic'}")
    summary = generate(SynthConfig(users=args.users, events_per_user=args.events_per_user, seed=args.seed),
                       out / "synthetic")
    print(f"      {summary['events']:,} events, {summary['users']:,} users, click rate {summary['click_rate']:.3f}")
    print(f"[2/2] preparing (time-split, L={args.max_seq_len}) → {out / 'data'}")
    proto = PROTOCOLS["time-split"].replace(max_seq_len=args.max_seq_len)
    stats = prepare(load_synthetic(out / "synthetic"), proto, out / "data")
    print(describe(out / "data"))
    _show_batch(out / "data")
    return stats


def _show_batch(data_dir: Path) -> None:
    from pipelines.datamodule import ShardDataModule

    batch = next(iter(ShardDataModule(data_dir, batch_size=4).train_dataloader()))
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in batch.items())
    print(f"one training batch: {shapes}")
