"""Turn a :class:`RawLog` into Parquet shards + ``feature_map.json`` + vocabularies + ``stats.json``.

Order of work: sort events by (user, protocol order) → history windows → samples and their split
→ negatives → vocabularies fitted on what the training split sees → encode events once → build the
list columns chunk by chunk (bounded memory) → write ``<split>/part-*.parquet``. Everything goes to a
temporary folder that is renamed at the end, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from features.atomic import atomic_dir
from features.protocols import SPLITS, TRAIN, ProtocolConfig, assign_splits, sample_negatives
from features.rawlog import RawLog
from features.schema import FeatureMap, FieldSpec, Role
from features.sequences import gather_ranges, history_windows
from features.stats import split_stats
from features.transforms import (
    DENSE_FIELDS,
    MISSING,
    dense_features,
    encode_columns,
    time_context_exprs,
    time_context_names,
)
from features.vocab import Vocab
from suan.utils.provenance import provenance

ITEM_VOCAB = "item_id"


@dataclass(frozen=True)
class Samples:
    """Sample rows (positives with their negatives right after them).

    Args:
        event: [S] index of the target event in the sorted events (history and context come from it).
        item: [S] item code of the target (the event's item, or a sampled negative).
        label: [S] 0/1.
        split: [S] 0 train, 1 valid, 2 test.
    """

    event: np.ndarray
    item: np.ndarray
    label: np.ndarray
    split: np.ndarray


def _sort_events(raw: RawLog, proto: ProtocolConfig) -> pl.DataFrame:
    """Events with ``user_idx`` (order of first appearance) and ``item_code``, sorted by user then order."""
    ev = raw.events.with_columns(
        pl.col("user").rank("dense").cast(pl.Int64).alias("_u"),  # temporary dense key
    )
    first_row = ev.group_by("_u").agg(pl.col("row").min().alias("_first")).sort("_first")
    first_row = first_row.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("user_idx"))
    ev = ev.join(first_row.select("_u", "user_idx"), on="_u").drop("_u")
    keys = ["user_idx", "ts", "row"] if proto.order == "time" else ["user_idx", "row"]
    ev = ev.sort(keys)
    codes = ev.select(pl.col("item").cast(pl.String)).unique(maintain_order=True).with_row_index("item_code")
    return ev.with_columns(pl.col("item").cast(pl.String)).join(codes, on="item", maintain_order="left")


def _item_table(raw: RawLog, ev: pl.DataFrame) -> pl.DataFrame:
    """One row per item code with its side fields (from the item table where there is one)."""
    items = ev.group_by("item_code", maintain_order=True).agg(
        pl.col("item").first(), *[pl.col(f).first() for f in raw.item_fields]
    ).sort("item_code")
    if raw.items is not None and raw.item_fields:
        side = raw.items.select(pl.col("item").cast(pl.String), *raw.item_fields).unique("item", keep="first")
        items = items.drop(list(raw.item_fields)).join(side, on="item", how="left", maintain_order="left")
    return items


def _make_samples(ev: pl.DataFrame, proto: ProtocolConfig, has_label: bool) -> tuple[Samples, object]:
    u, ts, row = (ev[c].to_numpy() for c in ("user_idx", "ts", "row"))
    win = history_windows(u, ts, proto.max_seq_len, strict_time=proto.order == "time")
    s_ev = np.flatnonzero(win.is_sample)
    split = assign_splits(proto, u[s_ev], ts[s_ev], row[s_ev])
    item = ev["item_code"].to_numpy()
    label = ev["label"].to_numpy()[s_ev].astype(np.int8) if has_label else np.ones(len(s_ev), np.int8)
    k = proto.negatives
    if k == 0:
        return Samples(s_ev, item[s_ev], label, split), win
    neg = sample_negatives(k, proto.negative_seed, u[s_ev], u, item)  # [S, k]
    # each positive is followed by its k negatives, which share its history, context and split
    event = np.repeat(s_ev, k + 1)
    items = np.concatenate([item[s_ev][:, None], neg], axis=1).reshape(-1)  # [S * (k + 1)]
    labels = np.concatenate([label[:, None], np.zeros((len(s_ev), k), np.int8)], axis=1).reshape(-1)
    return Samples(event, items, labels, np.repeat(split, k + 1)), win


def _train_visible(ev: pl.DataFrame, samples: Samples, win) -> np.ndarray:
    """[E] events a training sample sees: per user, every event up to its last training target."""
    u = ev["user_idx"].to_numpy()
    pos = np.arange(len(u)) - win.user_start
    last_train = np.full(int(u.max()) + 1 if len(u) else 0, -1, dtype=np.int64)
    train_ev = samples.event[samples.split == TRAIN]
    np.maximum.at(last_train, u[train_ev], pos[train_ev])
    return pos <= last_train[u]


def _fit_vocabs(raw: RawLog, ev: pl.DataFrame, items: pl.DataFrame, samples: Samples, visible: np.ndarray,
                users: pl.DataFrame, context: pl.DataFrame, min_count: int) -> dict[str, Vocab]:
    train = samples.split == TRAIN
    train_items = items[samples.item[train]]
    seen = ev.filter(pl.Series(visible))
    vocabs = {}
    for name in (ITEM_VOCAB, *raw.item_fields):
        col = "item" if name == ITEM_VOCAB else name
        values = pl.concat([seen[col].cast(pl.String), train_items[col].cast(pl.String)]).rename(col)
        vocabs[name] = Vocab.fit(name, values, min_count)
    for name in raw.event_fields:
        vocabs[name] = Vocab.fit(name, seen[name].cast(pl.String), min_count)
    train_users = users[ev["user_idx"].to_numpy()[samples.event[train]]]
    for name in users.columns:
        vocabs[name] = Vocab.fit(name, train_users[name].cast(pl.String), min_count)
    train_ctx = context[samples.event[train]]
    for name in context.columns:
        vocabs[name] = Vocab.fit(name, train_ctx[name].cast(pl.String), min_count)
    return vocabs


def _user_table(raw: RawLog, ev: pl.DataFrame) -> pl.DataFrame:
    """[U] rows in user_idx order: ``user_id`` plus profile fields (missing profile → MISSING)."""
    users = ev.group_by("user_idx").agg(pl.col("user").first().cast(pl.String).alias("user_id")).sort("user_idx")
    if raw.users is not None:
        prof = raw.users.select(pl.col("user").cast(pl.String).alias("user_id"),
                                *[pl.col(f).cast(pl.String) for f in raw.user_fields]).unique("user_id", keep="first")
        users = users.join(prof, on="user_id", how="left", maintain_order="left")
    return users.drop("user_idx").fill_null(MISSING)


def _feature_map(raw: RawLog, proto: ProtocolConfig, vocabs: dict[str, Vocab], users: pl.DataFrame,
                 context: pl.DataFrame) -> FeatureMap:
    def cat(name: str, role: Role, vocab: str) -> FieldSpec:
        return FieldSpec(name=name, role=role.value, vocab=vocab, vocab_size=vocabs[vocab].size)

    fields = [cat(c, Role.USER, c) for c in users.columns]
    fields += [cat(c, Role.CONTEXT, c) for c in context.columns]
    fields += [FieldSpec(name=d, role=Role.DENSE.value) for d in DENSE_FIELDS]
    fields += [cat(f"hist_{v}", Role.SEQ, v) for v in (ITEM_VOCAB, *raw.item_fields, *raw.event_fields)]
    fields.append(FieldSpec(name="hist_ts", role=Role.SEQ_TIME.value))
    fields += [cat(v, Role.TARGET, v) for v in (ITEM_VOCAB, *raw.item_fields)]
    fields.append(FieldSpec(name="target_ts", role=Role.TARGET_TIME.value))
    fields.append(FieldSpec(name="label", role=Role.LABEL.value))
    extra = {"negatives_per_positive": proto.negatives, "protocol": proto.to_dict(),
             "non_feature_columns": ["user_key"] + (["oracle_p"] if raw.oracle else [])}
    return FeatureMap(dataset=raw.name, protocol=proto.name, max_seq_len=proto.max_seq_len,
                      fields=tuple(fields), extra=extra)


@dataclass(frozen=True)
class Encoded:
    """Id arrays the shards are cut from.

    Args:
        seq: field name (``hist_*``) → [E] ids of every event.
        item_fields: target field → [I] ids per item code.
        user: user field → [U] ids per user index.
        context: context field → [E] ids per event.
        ts: [E] timestamps; user: [E] user index; oracle: [E] true probabilities or None.
    """

    seq: dict[str, np.ndarray]
    item_fields: dict[str, np.ndarray]
    user_fields: dict[str, np.ndarray]
    context: dict[str, np.ndarray]
    ts: np.ndarray
    user: np.ndarray
    oracle: np.ndarray | None


def _encode(raw: RawLog, ev: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame, context: pl.DataFrame,
            vocabs: dict[str, Vocab]) -> Encoded:
    item_cols = {"item": ITEM_VOCAB, **{f: f for f in raw.item_fields}}
    ev_ids = encode_columns(ev.select(*item_cols, *raw.event_fields), vocabs,
                            {**item_cols, **{f: f for f in raw.event_fields}})
    seq = {f"hist_{v}": ev_ids[c].to_numpy() for c, v in {**item_cols, **{f: f for f in raw.event_fields}}.items()}
    item_ids = encode_columns(items.select(*item_cols), vocabs, item_cols)
    return Encoded(
        seq=seq,
        item_fields={v: item_ids[c].to_numpy() for c, v in item_cols.items()},
        user_fields={c: a.to_numpy() for c, a in encode_columns(users, vocabs, {c: c for c in users.columns}).to_dict().items()},
        context={c: a.to_numpy() for c, a in encode_columns(context, vocabs, {c: c for c in context.columns}).to_dict().items()},
        ts=ev["ts"].to_numpy(), user=ev["user_idx"].to_numpy(),
        oracle=ev[raw.oracle].to_numpy().astype(np.float32) if raw.oracle else None,
    )


def _chunk_table(enc: Encoded, win, samples: Samples, rows: np.ndarray) -> pa.Table:
    """The Arrow table of the sample rows ``rows`` (indices into ``samples``)."""
    event = samples.event[rows]
    user = enc.user[event]
    start, end = win.hist_start[event], win.hist_end[event]
    idx, offsets = gather_ranges(start, end - start)
    offsets_arr = pa.array(offsets, type=pa.int32())
    cols: dict[str, pa.Array] = {f: pa.array(a[user]) for f, a in enc.user_fields.items()}
    cols.update({f: pa.array(a[event]) for f, a in enc.context.items()})
    target_ts = enc.ts[event]
    last_ts = enc.ts[np.maximum(end - 1, 0)]
    cols.update({k: pa.array(v) for k, v in dense_features(end - start, target_ts, last_ts).items()})
    for name, ids in enc.seq.items():
        cols[name] = pa.ListArray.from_arrays(offsets_arr, pa.array(ids[idx]))
    cols["hist_ts"] = pa.ListArray.from_arrays(offsets_arr, pa.array(enc.ts[idx]))
    cols.update({f: pa.array(a[samples.item[rows]]) for f, a in enc.item_fields.items()})
    cols["target_ts"] = pa.array(target_ts)
    cols["label"] = pa.array(samples.label[rows].astype(np.float32))
    cols["user_key"] = pa.array(user)
    if enc.oracle is not None:
        # the oracle probability belongs to the logged impression; sampled negatives have none
        oracle = np.where(samples.label[rows] >= 0, enc.oracle[event], np.nan).astype(np.float32)
        cols["oracle_p"] = pa.array(oracle)
    return pa.table(cols)


def _write_split(tmp: Path, split_name: str, table_fn, rows: np.ndarray, shard_rows: int, bar) -> list[str]:
    (tmp / split_name).mkdir()
    files = []
    for part, lo in enumerate(range(0, max(len(rows), 1), shard_rows)):
        chunk = rows[lo:lo + shard_rows]
        path = tmp / split_name / f"part-{part:05d}.parquet"
        pq.write_table(table_fn(chunk), path, row_group_size=min(shard_rows, 65536))
        files.append(path.name)
        bar.update(len(chunk))
    return files


def prepare(raw: RawLog, proto: ProtocolConfig, out: str | Path, shard_rows: int = 262144,
            progress: bool = True) -> dict:
    """Prepare ``raw`` under ``proto`` into ``out`` (replaced atomically). Returns the stats."""
    if raw.events.height == 0:
        raise ValueError(f"{raw.name}: no events")
    ev = _sort_events(raw, proto)
    items = _item_table(raw, ev)
    samples, win = _make_samples(ev, proto, raw.has_label)
    users = _user_table(raw, ev)
    context = ev.select(*time_context_exprs(pl.col("ts"), time_context_names(ev["ts"])),
                        *[pl.col(c) for c in raw.context_fields]).cast(pl.String)
    visible = _train_visible(ev, samples, win)
    vocabs = _fit_vocabs(raw, ev, items, samples, visible, users, context, proto.min_count)
    enc = _encode(raw, ev, items, users, context, vocabs)
    fmap = _feature_map(raw, proto, vocabs, users, context)
    with atomic_dir(out) as tmp:
        (tmp / "vocab").mkdir()
        for name, vocab in vocabs.items():
            vocab.save(tmp / "vocab" / f"{name}.parquet")
        fmap.save(tmp / "feature_map.json")
        stats: dict = {"dataset": raw.name, "protocol": proto.name, "events": ev.height,
                       "feature_map_hash": fmap.hash, "splits": {}, **provenance()}
        with tqdm(total=len(samples.event), desc="write shards", disable=not progress) as bar:
            for split_id, split_name in enumerate(SPLITS):
                rows = np.flatnonzero(samples.split == split_id)
                _write_split(tmp, split_name, lambda r: _chunk_table(enc, win, samples, r), rows, shard_rows, bar)
                stats["splits"][split_name] = split_stats(tmp / split_name, fmap)
        stats["vocab_sizes"] = {n: v.size for n, v in vocabs.items()}
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats
