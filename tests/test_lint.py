"""The code base stays ruff-clean (rules in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_ruff_is_clean():
    repo = Path(__file__).resolve().parents[1]
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    out = subprocess.run([ruff, "check", "--no-cache", str(repo)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
