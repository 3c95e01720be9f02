"""``pip install ".[serve]"`` in a fresh virtualenv: no torch, no Lightning, and it serves a real model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_serving_install_pulls_no_training_stack_and_scores(serving_models, make_request, tmp_path,
                                                                 start_server):
    # a copy of the sources: building writes build/ and *.egg-info beside them, never into the checkout
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info",
                                                               "__pycache__", ".pytest_cache", ".ruff_cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{src}[serve]"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = "import importlib.util as u; print(*[m for m in ('torch', 'lightning', 'scipy') if u.find_spec(m)])"
    missing = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    assert missing.stdout.strip() == "", f"the serving install pulled {missing.stdout.strip()}"
    # run outside the checkout, so the installed package (not the source tree) serves
    with start_server(serving_models.a, tmp_path / "server.log", python=str(python), cwd=tmp_path) as srv:
        r = httpx.post(f"{srv.url}/v1/score", json=make_request(0), timeout=30)
    assert r.status_code == 200 and len(r.json()["scores"]) == 10
