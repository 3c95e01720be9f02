"""MLflow set-up: a real local store (SQLite + artifact folder) by default, any tracking URI by option."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

DEFAULT_STORE = Path("runs") / "mlflow"
_CREATED: set[str] = set()


def _create_sqlite_store(uri: str, db: Path) -> None:
    """Create (or migrate) a SQLite store's schema once, under a file lock.

    Two processes opening a new store at once race in MLflow's schema creation ("table experiment_tags
    already exists", alembic "expected to match one row"): measured with two sweep workers on one store.
    """
    if uri in _CREATED:
        return
    from mlflow.tracking import MlflowClient

    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        MlflowClient(uri).search_experiments(max_results=1)
    _CREATED.add(uri)


def tracking_uri(uri: str) -> tuple[str, str | None]:
    """``(tracking_uri, artifact_location)``: ``""`` means ``sqlite:///runs/mlflow/mlflow.db``.

    MLflow 3.17 refuses a plain ``file:`` store, so the default is SQLite with artifacts beside it.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("sqlite:///"):
        # keep a local store's artifacts beside its database, not in the working directory
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        _create_sqlite_store(uri, db)
        return uri, (db.parent / "artifacts").resolve().as_uri()
    if uri:
        return uri, None
    store = DEFAULT_STORE.resolve()
    store.mkdir(parents=True, exist_ok=True)
    _create_sqlite_store(f"sqlite:///{store / 'mlflow.db'}", store / "mlflow.db")
    return f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()


def make_logger(uri: str, experiment: str, run_name: str, run_dir: Path):
    """An MLflow logger that continues the run recorded in ``run_dir`` (on resume) or starts one."""
    # imported here so that tracking_uri stays usable by the torch-free serving process
    from lightning.pytorch.loggers import MLFlowLogger

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    tracking, artifacts = tracking_uri(uri)
    id_file = run_dir / "mlflow_run_id"
    run_id = id_file.read_text().strip() if id_file.exists() else None
    logger = MLFlowLogger(experiment_name=experiment, run_name=run_name, tracking_uri=tracking,
                          artifact_location=artifacts, run_id=run_id, log_model=False)
    id_file.write_text(logger.run_id + "\n")
    return logger
