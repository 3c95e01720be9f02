"""A sweep's manifest: one entry per (grade, sequence length, data fraction, seed) point, written atomically.

Training the points is ``pipelines.sweep`` (the scaling package fits and plots; it trains nothing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MANIFEST = "manifest.json"


def point_name(grade: int, fraction: float, seed: int, seq_len: int = 0, lr: float = 0.0) -> str:
    """``g1-f0.5-s0``; with a sequence length set (0 = the grade's own) ``g1-L200-f0.5-s0``; with a learning
    rate searched (0 = the sweep's one lr) ``g1-f0.5-lr0.003-s0``."""
    length = f"-L{seq_len}" if seq_len else ""
    rate = f"-lr{lr:g}" if lr else ""
    return f"g{grade}{length}-f{fraction:g}{rate}-s{seed}"


def load_manifest(sweep: str | Path) -> dict:
    path = Path(sweep) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {"points": {}}


def save_manifest(sweep: Path, manifest: dict) -> None:
    tmp = sweep / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, sweep / MANIFEST)
