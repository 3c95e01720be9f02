"""Shared fixtures: paths to the shared real datasets, tiny prepared synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Triton reads TRITON_INTERPRET when ``triton.language`` is first imported (its own @jit helpers such as
# ``tl.min`` are decorated then), and ONNX export or torch.export in other tests can import it early: so
# the interpreter is chosen here, before any test module, on machines without CUDA.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SUAN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of a dataset under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real dataset {name} not found at {path} (../shared is absent on this machine)")
    return path


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """A small synthetic log (600 users) prepared under the time-split protocol."""
    from features.prepare import prepare
    from features.protocols import PROTOCOLS
    from features.sources.synthetic import SynthConfig, generate, load_synthetic

    root = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(users=600, items=300, categories=10, events_per_user=25, seed=7), root / "raw", progress=False)
    prepare(load_synthetic(root / "raw"), PROTOCOLS["time-split"].replace(max_seq_len=16), root / "data",
            shard_rows=1000, progress=False)
    return root
