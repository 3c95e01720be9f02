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
    TIME_CONTEXT,
    dense_features,
    time_context_exprs,
    time_context_names,
)
from features.vocab import MISSING, Vocab, encode_by_uniques, fit_weighted
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


def _first_appearance_codes(values: pl.Series, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes numbered in order of first appearance (by ``row``), and each code's first index.

    Returns:
        ``(codes [E], first_index [K])`` where ``values[first_index[c]]`` is the raw value of code ``c``.
    """
    rank = values.rank("dense").to_numpy().astype(np.int64) - 1  # [E] codes ordered by value
    k = int(rank.max()) + 1 if len(rank) else 0
    first_row = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_row, rank, row)
    order = np.argsort(first_row, kind="stable")  # value codes in order of first appearance
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    first_index = np.empty(k, dtype=np.int64)
    first_index[rank[::-1]] = np.arange(len(rank))[::-1]  # any index holding the value
    return remap[rank], first_index[order]


@dataclass(frozen=True)
class Tables:
    """Per-user and per-item tables indexed by ``user_idx`` / ``item_code``."""

    users: pl.DataFrame  # [U] user_id + profile fields (strings, MISSING where absent)
    items: pl.DataFrame  # [I] item + item fields


def _sort_events(raw: RawLog, proto: ProtocolConfig) -> tuple[pl.DataFrame, Tables]:
    """Events with ``user_idx`` (order of first appearance) and ``item_code``, sorted by user then order.

    Only the columns later steps need are kept; raw ids live once per user / item in :class:`Tables`.
    """
    row = raw.events["row"].to_numpy()
    user_idx, user_first = _first_appearance_codes(raw.events["user"], row)
    item_code, item_first = _first_appearance_codes(raw.events["item"], row)
    keep = ["ts", "row", *(["label"] if raw.has_label else []), *raw.event_fields, *raw.context_fields,
            *([raw.oracle] if raw.oracle else [])]
    ev = raw.events.select(keep).with_columns(pl.Series("user_idx", user_idx), pl.Series("item_code", item_code))
    ev = ev.sort(["user_idx", "ts", "row"] if proto.order == "time" else ["user_idx", "row"])
    users = pl.DataFrame({"user_id": raw.events["user"].gather(user_first).cast(pl.String)})
    if raw.users is not None:
        prof = raw.users.select(pl.col("user").cast(pl.String).alias("user_id"),
                                *[pl.col(f).cast(pl.String) for f in raw.user_fields]).unique("user_id", keep="first")
        users = users.join(prof, on="user_id", how="left", maintain_order="left")
    items = raw.events.select("item", *raw.item_fields)[item_first].with_columns(pl.col("item").cast(pl.String))
    if raw.items is not None and raw.item_fields:
        side = raw.items.select(pl.col("item").cast(pl.String), *raw.item_fields).unique("item", keep="first")
        items = items.drop(list(raw.item_fields)).join(side, on="item", how="left", maintain_order="left")
    return ev, Tables(users.fill_null(MISSING), items)


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


def _fit_vocabs(raw: RawLog, ev: pl.DataFrame, tables: Tables, samples: Samples, visible: np.ndarray,
                context: pl.DataFrame, min_count: int) -> dict[str, Vocab]:
    """Vocabularies counted on integer codes over what the training split sees."""
    train = samples.split == TRAIN
    n_items = tables.items.height
    # an item occurrence is a visible behaviour or a training target (positive or sampled negative)
    item_w = (np.bincount(ev["item_code"].to_numpy()[visible], minlength=n_items)
              + np.bincount(samples.item[train], minlength=n_items))
    vocabs = {ITEM_VOCAB: fit_weighted(ITEM_VOCAB, tables.items["item"], item_w, min_count)}
    for name in raw.item_fields:
        vocabs[name] = fit_weighted(name, tables.items[name], item_w, min_count)
    for name in raw.event_fields:
        vocabs[name] = Vocab.fit(name, ev[name].filter(pl.Series(visible)), min_count)
    train_events = samples.event[train]
    user_w = np.bincount(ev["user_idx"].to_numpy()[train_events], minlength=tables.users.height)
    for name in tables.users.columns:
        vocabs[name] = fit_weighted(name, tables.users[name], user_w, min_count)
    for name in context.columns:
        vocabs[name] = Vocab.fit(name, context[name].gather(train_events), min_count)
    return vocabs


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
             "time_context_fields": [c for c in context.columns if c in TIME_CONTEXT],
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


def _encode(raw: RawLog, ev: pl.DataFrame, tables: Tables, context: pl.DataFrame,
            vocabs: dict[str, Vocab]) -> Encoded:
    item_code = ev["item_code"].to_numpy()
    by_code = {ITEM_VOCAB: vocabs[ITEM_VOCAB].encode(tables.items["item"]).to_numpy()}
    by_code.update({f: encode_by_uniques(tables.items[f], vocabs[f]) for f in raw.item_fields})
    seq = {f"hist_{v}": ids[item_code] for v, ids in by_code.items()}
    seq.update({f"hist_{f}": encode_by_uniques(ev[f], vocabs[f]) for f in raw.event_fields})
    return Encoded(
        seq=seq,
        item_fields=by_code,
        user_fields={c: encode_by_uniques(tables.users[c], vocabs[c]) for c in tables.users.columns},
        context={c: encode_by_uniques(context[c], vocabs[c]) for c in context.columns},
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
    ev, tables = _sort_events(raw, proto)
    samples, win = _make_samples(ev, proto, raw.has_label)
    context = ev.select(*time_context_exprs(pl.col("ts"), time_context_names(ev["ts"])),
                        *[pl.col(c) for c in raw.context_fields])
    visible = _train_visible(ev, samples, win)
    vocabs = _fit_vocabs(raw, ev, tables, samples, visible, context, proto.min_count)
    enc = _encode(raw, ev, tables, context, vocabs)
    del visible
    fmap = _feature_map(raw, proto, vocabs, tables.users, context)
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
