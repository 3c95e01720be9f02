"""MLflow set-up: a real local store (SQLite + artifact folder) by default, any tracking URI by option."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

DEFAULT_STORE = Path("runs") / "mlflow"


@contextlib.contextmanager
def sqlite_lock(url: str):
    """Hold an exclusive file lock beside a ``sqlite:///`` database (nothing for other URLs).

    Two processes opening a new SQLite store at once race in its schema creation: measured with two sweep
    workers on one MLflow store ("table experiment_tags already exists") and on one Optuna storage (a
    duplicate alembic version row). Creating a store inside this lock serialises them.
    """
    if not url.startswith("sqlite:///"):
        yield
        return
    db = Path(url.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def tracking_uri(uri: str) -> tuple[str, str | None]:
    """``(tracking_uri, artifact_location)``: ``""`` means ``sqlite:///runs/mlflow/mlflow.db``.

    MLflow 3.17 refuses a plain ``file:`` store, so the default is SQLite with artifacts beside it.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("sqlite:///"):
        # keep a local store's artifacts beside its database, not in the working directory
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        return uri, (db.parent / "artifacts").resolve().as_uri()
    if uri:
        return uri, None
    store = DEFAULT_STORE.resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()


def make_logger(uri: str, experiment: str, run_name: str, run_dir: Path):
    """An MLflow logger that continues the run recorded in ``run_dir`` (on resume) or starts one."""
    # imported here so that tracking_uri stays usable by the torch-free serving process
    from lightning.pytorch.loggers import MLFlowLogger

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    tracking, artifacts = tracking_uri(uri)
    id_file = run_dir / "mlflow_run_id"
    run_id = id_file.read_text().strip() if id_file.exists() else None
    with sqlite_lock(tracking):  # the first run on a new store creates its schema
        logger = MLFlowLogger(experiment_name=experiment, run_name=run_name, tracking_uri=tracking,
                              artifact_location=artifacts, run_id=run_id, log_model=False)
        id_file.write_text(logger.run_id + "\n")
    return logger
