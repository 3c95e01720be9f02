"""Statistics of prepared shards, read back from disk (so they describe what was written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from features.schema import OOV_ID, FeatureMap, Role
from suan.utils.metrics import auc, logloss


def split_stats(split_dir: Path, fmap: FeatureMap) -> dict:
    """Rows, users, items, positive rate, history-length percentiles, target OOV rate, oracle AUC."""
    files = sorted(Path(split_dir).glob("*.parquet"))
    target = fmap.by_role(Role.TARGET)[0].name
    seq = fmap.by_role(Role.SEQ_TIME)[0].name
    lf = pl.scan_parquet(files) if files else None
    if lf is None:
        return {"rows": 0}
    has_oracle = "oracle_p" in pl.read_parquet_schema(files[0])
    df = lf.select(
        pl.col(target), pl.col("label"), pl.col("user_key"), pl.col(seq).list.len().alias("hist_len"),
        *([pl.col("oracle_p")] if has_oracle else []),
    ).collect()
    if df.height == 0:
        return {"rows": 0}
    lens = df["hist_len"].to_numpy()
    out = {
        "rows": df.height,
        "users": df["user_key"].n_unique(),
        "items": df[target].n_unique(),
        "positive_rate": float(df["label"].mean()),
        "target_oov_rate": float((df[target] == OOV_ID).mean()),
        "hist_len": {f"p{q}": float(np.percentile(lens, q)) for q in (10, 50, 90, 99)}
        | {"mean": float(lens.mean()), "max": int(lens.max()), "min": int(lens.min())},
    }
    if has_oracle:
        known = df.filter(pl.col("oracle_p").is_not_nan())
        y, prob = known["label"].to_numpy(), known["oracle_p"].to_numpy()
        out["oracle_auc"] = auc(y, prob)
        # the Bayes logloss: a floor no model's logloss on this split can beat (scaling fits are bounded by it)
        out["oracle_logloss"] = logloss(y, prob)
    return out


def describe(data_dir: str | Path) -> str:
    """Human-readable summary of a prepared folder (its ``stats.json`` and ``feature_map.json``)."""
    data_dir = Path(data_dir)
    stats = json.loads((data_dir / "stats.json").read_text())
    fmap = FeatureMap.load(data_dir / "feature_map.json")
    lines = [f"{stats['dataset']}  protocol={stats['protocol']}  events={stats['events']:,}  "
             f"L={fmap.max_seq_len}  feature_map={fmap.hash[:12]}"]
    header = f"{'split':<6} {'rows':>10} {'users':>8} {'items':>7} {'pos%':>6} {'oov%':>6} {'hist p50/p90/max':>18}"
    lines += [header + ("  oracle_auc" if any("oracle_auc" in s for s in stats["splits"].values()) else "")]
    for name, s in stats["splits"].items():
        if not s.get("rows"):
            lines.append(f"{name:<6} {0:>10}")
            continue
        h = s["hist_len"]
        row = (f"{name:<6} {s['rows']:>10,} {s['users']:>8,} {s['items']:>7,} {100 * s['positive_rate']:>6.1f} "
               f"{100 * s['target_oov_rate']:>6.2f} {h['p50']:>6.0f}/{h['p90']:>4.0f}/{h['max']:>5d}")
        if "oracle_auc" in s:
            row += f"  {s['oracle_auc']:.4f}"
        lines.append(row)
    roles = {}
    for f in fmap.fields:
        roles.setdefault(f.role, []).append(f"{f.name}({f.vocab_size})" if f.vocab_size else f.name)
    lines += [f"  {role:<12} {', '.join(names)}" for role, names in roles.items()]
    return "\n".join(lines)


def popularity_auc(data_dir: str | Path, split: str) -> float:
    """AUC of ranking a split's candidates by how often they were clicked in train (the floor any model must beat).

    Args:
        data_dir: prepared folder.
        split: ``valid`` or ``test``.
    """
    data_dir = Path(data_dir)
    target = FeatureMap.load(data_dir / "feature_map.json").by_role(Role.TARGET)[0].name
    clicks = (pl.scan_parquet(sorted((data_dir / "train").glob("*.parquet"))).filter(pl.col("label") == 1)
              .group_by(target).agg(pl.len().alias("clicks")))
    rows = (pl.scan_parquet(sorted((data_dir / split).glob("*.parquet"))).select(target, "label")
            .join(clicks, on=target, how="left").collect())
    return auc(rows["label"].to_numpy(), rows["clicks"].fill_null(0).to_numpy().astype(np.float64))
