"""Imports run one way: the import-linter contracts in pyproject.toml hold, and a broken one is reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_every_import_contract_is_kept():
    done = _lint()
    assert done.returncode == 0, done.stdout[-3000:]
    assert "5 kept, 0 broken" in done.stdout


def test_a_contract_that_the_code_breaks_is_reported(tmp_path):
    # pipelines imports suan, so a contract forbidding it must fail: the linter really reads the imports
    config = tmp_path / "contracts.toml"
    config.write_text('[tool.importlinter]\nroot_packages = ["suan", "pipelines"]\n\n[[tool.importlinter.contracts]]\n'
                      'name = "pipelines without suan"\ntype = "forbidden"\nsource_modules = ["pipelines"]\n'
                      'forbidden_modules = ["suan"]\n')
    done = _lint(str(config))
    assert done.returncode != 0 and "BROKEN" in done.stdout
