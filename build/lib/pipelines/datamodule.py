"""Lightning DataModule that streams prepared Parquet shards as padded torch batches.

The unit of work is one Parquet row group. Units are dealt round-robin to (rank, worker) pairs so
DDP ranks and DataLoader workers read disjoint data; training shuffles unit order and rows within
a buffer, seeded by (seed, epoch), so an epoch's order is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from features.collate import collate
from features.errors import DataError
from features.sampling import keep_mask
from features.schema import FeatureMap, Role
from features.vocab import Vocab


def parquet_file(path: Path) -> pq.ParquetFile:
    """Open a shard; a corrupt or empty file is a :class:`DataError` naming it, not a pyarrow trace."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(str(path), None, None, f"not a readable Parquet shard ({exc}); prepare the data again") from exc


def _units(files: list[Path]) -> list[tuple[Path, int]]:
    return [(f, g) for f in files for g in range(parquet_file(f).num_row_groups)]


class ShardStream(IterableDataset):
    """Batches of one split.

    Args:
        files: Parquet shards of the split.
        fmap: the feature map (decides padding and which columns are read).
        batch_size: rows per batch.
        shuffle: shuffle unit order and rows (training). Default: False.
        seed: base seed of the shuffle. Default: 0.
        shuffle_units: units held in the shuffle buffer. Default: 4.
        fraction: keep this nested, deterministic share of the rows (``features.sampling``). Default: 1.
        bucket_by_length: with ``shuffle``, sort each shuffle buffer's rows by history length before
            cutting batches, then shuffle the batch order: batches of similar lengths, so an eager model
            drops most padding columns (``suan.models.sequence.history_width``). Default: False.
    """

    def __init__(self, files: list[Path], fmap: FeatureMap, batch_size: int, shuffle: bool = False,
                 seed: int = 0, shuffle_units: int = 4, rank: int = 0, world_size: int = 1,
                 fraction: float = 1.0, bucket_by_length: bool = False) -> None:
        super().__init__()
        self.units = _units(files)
        self.fmap, self.batch_size, self.shuffle = fmap, batch_size, shuffle
        self.seed, self.shuffle_units, self.epoch = seed, shuffle_units, 0
        self.rank, self.world_size, self.fraction = rank, world_size, fraction
        self.bucket_by_length = bucket_by_length and shuffle
        self.columns = [f.name for f in fmap.fields] + ["user_key"]
        self.num_rows = self._count_rows(files)

    def _count_rows(self, files: list[Path]) -> int:
        if self.fraction >= 1.0:
            return sum(parquet_file(f).metadata.num_rows for f in files)
        ts = self.fmap.by_role(Role.TARGET_TIME)[0].name
        return sum(int(self._keep(pq.read_table(f, columns=["user_key", ts])).sum()) for f in files)

    def _keep(self, table: pa.Table) -> np.ndarray:
        ts = self.fmap.by_role(Role.TARGET_TIME)[0].name
        return keep_mask(table.column("user_key").to_numpy(), table.column(ts).to_numpy(), self.fraction)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _slot(self) -> tuple[int, int]:
        """(this reader's slot, number of slots) over DDP ranks x DataLoader workers."""
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * workers + wid, self.world_size * workers

    def _unit_order(self) -> np.ndarray:
        order = np.arange(len(self.units))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        return order

    def _tables(self) -> Iterator[pa.Table]:
        slot, slots = self._slot()
        order = self._unit_order()
        if self.world_size > 1:
            yield from self._strided_tables(order, slot, slots)
            return
        mine = [self.units[i] for i in order[slot::slots]]
        rng = np.random.default_rng([self.seed, self.epoch, slot])
        step = self.shuffle_units if self.shuffle else 1
        for lo in range(0, len(mine), step):
            table = pa.concat_tables([self._read(u) for u in mine[lo:lo + step]])
            if self.shuffle:
                table = table.take(rng.permutation(table.num_rows))
            yield table

    def _strided_tables(self, order: np.ndarray, slot: int, slots: int) -> Iterator[pa.Table]:
        """DDP: every slot gets exactly ``num_rows // slots`` rows (row g goes to slot g % slots).

        Equal row counts give every rank the same number of batches, which DDP needs to avoid a
        hang at the end of an epoch. Each slot reads all units, so I/O grows with the slot count.
        """
        per_slot = self.num_rows // slots
        rng = np.random.default_rng([self.seed, self.epoch, slot])
        seen = 0
        for i in order:
            table = self._read(self.units[i])
            g = seen + np.arange(table.num_rows)
            seen += table.num_rows
            keep = np.flatnonzero((g % slots == slot) & (g < per_slot * slots))
            if len(keep):
                yield table.take(rng.permutation(keep) if self.shuffle else keep)

    def _read(self, unit: tuple[Path, int]) -> pa.Table:
        path, group = unit
        try:
            table = parquet_file(path).read_row_group(group, columns=self.columns)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(str(path), None, None, f"row group {group} cannot be read ({exc}); prepare the data again") \
                from exc
        return table if self.fraction >= 1.0 else table.filter(pa.array(self._keep(table)))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        carry: pa.Table | None = None
        batch_rng = np.random.default_rng([self.seed, self.epoch, self._slot()[0], 1])
        for table in self._tables():
            table = pa.concat_tables([carry, table]) if carry is not None else table
            full = table.num_rows - table.num_rows % self.batch_size
            for rows in self._batch_rows(table.slice(0, full), batch_rng):
                yield _to_torch(collate(rows, self.fmap))
            carry = table.slice(full) if full < table.num_rows else None
        if carry is not None and carry.num_rows:
            yield _to_torch(collate(carry, self.fmap))

    def _batch_rows(self, table: pa.Table, rng: np.random.Generator) -> Iterator[pa.Table]:
        """Full batches of ``table`` in order, or, bucketed, by history length in a shuffled batch order.

        The rows left over for the next buffer (the carry) are cut before sorting, so they are a random
        sample, not always the longest histories.
        """
        if not self.bucket_by_length:
            for lo in range(0, table.num_rows, self.batch_size):
                yield table.slice(lo, self.batch_size)
            return
        seq = self.fmap.by_role(Role.SEQ)[0].name
        lengths = pc.list_value_length(table.column(seq)).to_numpy(zero_copy_only=False)
        by_length = table.take(np.argsort(lengths, kind="stable"))  # stable: ties keep the shuffled order
        for lo in rng.permutation(np.arange(0, table.num_rows, self.batch_size)):
            yield by_length.slice(int(lo), self.batch_size)


def _to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in batch.items()}


class ShardDataModule(L.LightningDataModule):
    """Train/valid/test streams of a prepared folder.

    Args:
        data_dir: output of ``suan data prepare``.
        batch_size: rows per batch. Default: 256.
        num_workers: DataLoader worker processes. Default: 0.
        seed: shuffle seed. Default: 0.
        train_fraction: nested deterministic share of the training rows used (scaling sweeps). Default: 1.
        eval_fraction: nested deterministic share of the valid/test rows evaluated; the same rows for
            every run on this folder, so sweep points stay comparable while evaluation gets cheaper. Default: 1.
        bucket_by_length: training batches of similar history lengths (see ``ShardStream``). Default: False.
    """

    def __init__(self, data_dir: str | Path, batch_size: int = 256, num_workers: int = 0, seed: int = 0,
                 train_fraction: float = 1.0, eval_fraction: float = 1.0, bucket_by_length: bool = False) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.fmap = FeatureMap.load(self.data_dir / "feature_map.json")
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_fraction, self.eval_fraction = train_fraction, eval_fraction
        self.bucket_by_length = bucket_by_length

    def stream(self, split: str, shuffle: bool = False) -> ShardStream:
        """Training streams are split across DDP ranks; evaluation streams are not (every rank
        evaluates the whole split, so metrics are exact and need no cross-rank gathering)."""
        files = sorted((self.data_dir / split).glob("*.parquet"))
        split_ranks = shuffle and self._has_trainer()
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if split_ranks else (0, 1)
        return ShardStream(files, self.fmap, self.batch_size, shuffle=shuffle, seed=self.seed,
                           rank=rank, world_size=world, fraction=self.train_fraction if split == "train" else self.eval_fraction,
                           bucket_by_length=self.bucket_by_length)

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Training batches per epoch and rank (DDP ranks read equal shares; a short last batch counts)."""
        rows = self.stream("train").num_rows // max(world_size, 1)
        return -(-rows // self.batch_size)

    def vocab_counts(self) -> dict[str, np.ndarray]:
        """Vocabulary → training count per id ([V]; padding and OOV count 0), from ``vocab/*.parquet``."""
        out = {}
        for name, size in self.fmap.vocab_sizes().items():
            vocab = Vocab.load(name, self.data_dir / "vocab" / f"{name}.parquet")
            counts = np.zeros(size, dtype=np.int64)
            counts[2:2 + len(vocab.counts)] = vocab.counts
            out[name] = counts
        return out

    def _has_trainer(self) -> bool:
        return getattr(self, "trainer", None) is not None

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        stream = self.stream(split, shuffle)
        if shuffle and self._has_trainer():
            stream.set_epoch(self.trainer.current_epoch)
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=False, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
