"""Run one benchmark case in a fresh Python process and read back its JSON result.

A fresh process per case keeps peak-memory figures and thread pools from leaking between cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_child(script: str, *args: object) -> dict:
    """``python -c script *args``; its last stdout line parsed as JSON, or ``{"error": ...}`` if it failed.

    ``OMP_NUM_THREADS`` defaults to 1 in the child so cases compare like with like.
    """
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        err = out.stderr.strip()
        return {"error": err.splitlines()[-1] if err else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])
