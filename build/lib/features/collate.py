"""Arrow record batches → padded numpy arrays (no torch here: the DataModule wraps them).

Histories are right-padded with id 0 (timestamps with 0) to the feature map's L; ``hist_len`` [B]
gives the valid lengths. The same function serves training batches and online requests.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features.schema import FeatureMap, Role


def pad_lists(column: pa.Array | pa.ChunkedArray, max_len: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Pad a list column to ``[B, max_len]`` (most recent kept when longer).

    Returns:
        ``(values [B, max_len], lengths [B])``.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    offsets = column.offsets.to_numpy().astype(np.int64)
    flat = column.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    full_len = np.diff(offsets)
    lengths = np.minimum(full_len, max_len)
    starts = offsets[:-1] + (full_len - lengths)  # keep the last max_len items
    out = np.zeros((len(lengths), max_len), dtype=dtype)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = flat[np.repeat(starts, lengths) + cols]
    return out, lengths.astype(np.int64)


def collate(table: pa.Table | pa.RecordBatch, fmap: FeatureMap) -> dict[str, np.ndarray]:
    """One batch as arrays.

    Returns:
        ``<categorical>`` int64 [B] for user/context/target fields, ``hist_<x>`` int64 [B, L],
        ``hist_ts`` int64 [B, L], ``hist_len`` int64 [B], ``target_ts`` int64 [B],
        ``dense`` float32 [B, n_dense], ``label`` float32 [B], ``user_key`` int64 [B].
    """
    L = fmap.max_seq_len
    out: dict[str, np.ndarray] = {}
    for f in (*fmap.by_role(Role.USER), *fmap.by_role(Role.CONTEXT), *fmap.by_role(Role.TARGET)):
        out[f.name] = table.column(f.name).to_numpy().astype(np.int64)
    lengths = None
    for f in (*fmap.by_role(Role.SEQ), *fmap.by_role(Role.SEQ_TIME)):
        out[f.name], lengths = pad_lists(table.column(f.name), L, np.int64)
    out["hist_len"] = lengths
    dense = fmap.by_role(Role.DENSE)
    B = table.num_rows
    out["dense"] = (np.stack([table.column(f.name).to_numpy().astype(np.float32) for f in dense], axis=1)
                    if dense else np.zeros((B, 0), np.float32))  # [B, n_dense]
    out["target_ts"] = table.column(fmap.by_role(Role.TARGET_TIME)[0].name).to_numpy().astype(np.int64)
    out["label"] = table.column(fmap.by_role(Role.LABEL)[0].name).to_numpy().astype(np.float32)
    if "user_key" in table.column_names:
        out["user_key"] = table.column("user_key").to_numpy().astype(np.int64)
    return out
