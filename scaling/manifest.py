"""A sweep's manifest: one entry per (grade, sequence length, data fraction, seed) point, written atomically.

Training the points is ``pipelines.sweep`` (the scaling package fits and plots; it trains nothing).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

MANIFEST = "manifest.json"


def point_name(grade: int, fraction: float, seed: int, seq_len: int = 0, lr: float = 0.0) -> str:
    """``g1-f0.5-s0``; with a sequence length set (0 = the grade's own) ``g1-L200-f0.5-s0``; with a learning
    rate searched (0 = the sweep's one lr) ``g1-f0.5-lr0.003-s0``."""
    length = f"-L{seq_len}" if seq_len else ""
    rate = f"-lr{lr:g}" if lr else ""
    return f"g{grade}{length}-f{fraction:g}{rate}-s{seed}"


def entry_name(entry: dict) -> str:
    """The manifest key of a point's entry (see ``point_name``)."""
    return point_name(entry["grade"], entry["fraction"], entry["seed"], entry.get("seq_len_set", 0),
                      entry.get("lr_set", 0.0))


def load_manifest(sweep: str | Path) -> dict:
    path = Path(sweep) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {"points": {}}


def save_manifest(sweep: Path, manifest: dict) -> None:
    tmp = sweep / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, sweep / MANIFEST)


@contextmanager
def _locked(sweep: Path) -> Iterator[None]:
    sweep.mkdir(parents=True, exist_ok=True)
    with open(sweep / f".{MANIFEST}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def merge_points(sweep: Path, entries: Iterable[dict], **fields) -> dict:
    """Merge point ``entries`` (each named by ``entry_name``) and top-level ``fields`` into the manifest on disk;
    returns it.

    Several workers, and several studies (a size axis and a data axis), share one sweep folder: each merges
    into the file as it is now, under a lock, instead of writing back what it loaded when it started (which
    dropped the points another worker had written meanwhile). A finished point is never replaced; a failed
    or retried one is, by its newer outcome (so of two entries for one point, done or not, the done one stays).
    """
    with _locked(sweep):
        manifest = load_manifest(sweep)
        for entry in entries:
            name = entry_name(entry)
            if manifest["points"].get(name, {}).get("status") != "done":
                manifest["points"][name] = entry
        manifest.update(fields)
        save_manifest(sweep, manifest)
    return manifest
