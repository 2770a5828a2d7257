"""The one module that knows MLflow's private tables and store internals.

Two jobs that need MLflow's insides, kept here so an MLflow upgrade breaks one
module: creating a SQLite store all or nothing (`create_sqlite_store`, with a
per-version cache of the empty schema), and writing many whole runs in one
transaction (`insert_runs`, the rows `create_run`, `log_batch` and
`set_terminated` would write). The driver's store (`mlflow_store.Tracker`)
and the test simulator (`testing/simulate.py`) both write through
`insert_runs`; tests/test_sweeps_tracking.py checks its runs read back as the
per-call writes make them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import cache_root
from sweeps.ledger.tracking_uri import sqlite_path


def create_sqlite_store(uri: str) -> None:
    """Give a SQLite store that does not exist yet MLflow's schema, all or nothing.

    MLflow builds a fresh SQLite store by running its migrations one DDL
    statement at a time (~3 s). A driver killed meanwhile, or a second process
    creating the same store ("duplicate column name"), leaves a file that no
    later process can open ("table ... already exists"). So the schema is built
    in a private file beside the store and linked into place once complete; a
    process that loses the race drops its copy. Other URIs are left alone.
    """
    path = sqlite_path(uri)
    if path is None or "?" in uri or path.exists():  # URIs with options: left to MLflow
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_copies(path)
    private = path.with_name(f".{path.name}.creating-{socket.gethostname()}-{os.getpid()}")
    private.unlink(missing_ok=True)
    empty = _empty_store()
    if empty is not None:
        shutil.copyfile(empty, private)
    else:
        _build_schema(private)
    _publish(private, path)


def _build_schema(path: Path) -> None:
    """Run MLflow's migrations on a new SQLite file (~3 s)."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()


def _empty_store() -> Path | None:
    """A freshly migrated, empty SQLite store for this MLflow version, made once and cached.

    Every new sweep store starts as a copy of it instead of running the
    migrations again (2.4-4 s of a sweep's start-up). The cache is keyed by
    MLflow's version (its schema comes with it); an unwritable cache folder
    means no cache (None), not an error.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        mlflow_version = version("mlflow")
    except PackageNotFoundError:
        mlflow_version = version("mlflow-skinny")
    cached = cache_root() / "mlflow" / f"empty-{mlflow_version}.db"
    if cached.is_file():
        return cached
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_copies(cached)
        private = cached.with_name(f".{cached.name}.creating-{socket.gethostname()}-{os.getpid()}")
        private.unlink(missing_ok=True)
        _build_schema(private)
        _publish(private, cached)
    except OSError:
        return None
    return cached


def _publish(private: Path, path: Path) -> None:
    """Link a complete private file into place; the first process to publish wins."""
    try:
        os.link(private, path)  # fails if another process published first: keep theirs
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: rename, unless one appeared
        if not path.exists():
            os.replace(private, path)
    private.unlink(missing_ok=True)


def _remove_abandoned_copies(path: Path) -> None:
    """Delete private copies (and their SQLite journals) left by killed creators on this host."""
    copy = re.compile(
        rf"\.{re.escape(path.name)}\.creating-{re.escape(socket.gethostname())}-(\d+)(-journal)?"
    )
    for leftover in path.parent.glob(f".{path.name}.creating-*"):
        match = copy.fullmatch(leftover.name)
        if match is None:  # another host's, on a shared file system: not ours to judge
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


def sql_store(client: Any) -> Any:
    """MLflow's SQLAlchemy store behind `client`, or None (another store, or a wrapped client)."""
    from mlflow.tracking import MlflowClient

    if type(client) is not MlflowClient:
        return None
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store  # private: checked by its type
    except (ImportError, AttributeError):
        return None
    return store if isinstance(store, SqlAlchemyStore) else None


@dataclass(frozen=True)
class NewRun:
    """One whole run for `insert_runs`: what MLflow would hold after its per-call writes."""

    run_id: str
    experiment_id: str
    name: str
    status: str  # FINISHED | FAILED | ...
    start_time: int  # ms since the epoch
    end_time: int
    artifact_uri: str
    tags: Mapping[str, str]
    params: Mapping[str, str]
    points: Sequence[tuple[str, int, float]]  # (metric, step, value); the last per (metric, step)
    user_id: str = "unknown"


def insert_runs(store: Any, runs: Sequence[NewRun]) -> None:
    """Write `runs` (rows of runs, tags, params, metrics, latest metrics) in one transaction.

    All or none: a killed writer leaves no half-written run. `store` is an
    `sql_store(...)`; its `sanitize_metric_value` stores NaN as MLflow does.
    """
    import sqlalchemy
    from mlflow.store.tracking.dbmodels import models

    run_rows, tags, params, metrics, latest = [], [], [], [], []
    for run in runs:
        run_rows.append(
            {
                "run_uuid": run.run_id,
                "name": run.name,
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "user_id": run.user_id,
                "status": run.status,
                "start_time": run.start_time,
                "end_time": run.end_time,
                "deleted_time": None,
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": run.artifact_uri,
                "experiment_id": int(run.experiment_id),
            }
        )
        tags.extend(
            {"key": k, "value": str(v), "run_uuid": run.run_id} for k, v in run.tags.items()
        )
        params.extend(
            {"key": k, "value": str(v), "run_uuid": run.run_id} for k, v in run.params.items()
        )
        last: dict[tuple[str, int], float] = {}
        for name, step, value in run.points:  # one point per (metric, step), the last reported
            last[(name, int(step))] = float(value)
        newest: dict[str, dict[str, Any]] = {}
        for (name, step), value in last.items():
            is_nan, stored = store.sanitize_metric_value(value)
            row = {
                "key": name,
                "value": stored,
                "timestamp": run.end_time,
                "step": step,
                "is_nan": is_nan,
                "run_uuid": run.run_id,
            }
            metrics.append(row)
            best = newest.get(name)
            if best is None or (step, stored) > (best["step"], best["value"]):
                newest[name] = row
        latest.extend(newest.values())
    with store.ManagedSessionMaker(read_only=False) as session:
        for model, rows in (
            (models.SqlRun, run_rows),
            (models.SqlTag, tags),
            (models.SqlParam, params),
            (models.SqlMetric, metrics),
            (models.SqlLatestMetric, latest),
        ):
            if rows:
                session.execute(sqlalchemy.insert(model.__table__), rows)
