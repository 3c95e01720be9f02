"""What is written next to every artifact: the git SHA and when it was made."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path


def git_sha(cwd: str | Path | None = None) -> str:
    """The checkout's commit SHA (with ``-dirty`` for local changes), or ``unknown`` outside git."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def provenance() -> dict[str, str]:
    """Git SHA and UTC creation time, for the metadata of any artifact."""
    return {"git_sha": git_sha(), "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
