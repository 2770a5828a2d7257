"""Tracking URIs: where a SQLite store's file is, and whether the store opens, before anything is written.

A URI MLflow cannot use used to end in a traceback from deep inside MLflow,
after the sweep's storage folder was made. Two checks come first instead:

- `sweeps.spec.uri_problem(uri)` (the spec's validator; text only): a scheme MLflow's
  tracking store takes, less the file store (MLflow 3 refuses it for new
  features); `sqlite:///<path>` (a file, not an in-memory database); a host
  for `http(s)://`.
- `check_store(uri)` (before `run`, `sync`, `status` and `validate` touch
  storage or MLflow): a SQLite file that exists must be a readable SQLite
  database (a corrupted one is named), a new one must be creatable (its
  folder writable); a SQL server URI needs its database driver installed. A
  tracking *server* that does not answer is not an error here: the sweep runs
  and syncs later (sweeps/runner.py).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sweeps.spec import SQL_SCHEMES, tracking_scheme, uri_problem


def sqlite_path(uri: str) -> Path | None:
    """A `sqlite:///` URI's database file, relative ones against the working directory.

    None for other stores.
    """
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///") :])
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


def default_artifact_location(uri: str, experiment: str) -> str | None:
    """For a sqlite store, artifacts go beside the database file: `<dir>/mlartifacts/<name>`."""
    path = sqlite_path(uri)
    if path is None:
        return None
    return (path.resolve().parent / "mlartifacts" / experiment).as_uri()


def normalise_uri(uri: str) -> str:
    """Relative sqlite paths are made absolute (against the working directory)."""
    path = sqlite_path(uri)
    return uri if path is None else f"sqlite:///{path}"


def check_store(uri: str, *, field: str = "tracking.uri") -> None:
    """ValueError (one line naming the store) when the store at `uri` cannot be opened or created.

    Reads only: nothing is created, so a refused spec leaves no trace.
    """
    problem = uri_problem(uri)
    if problem is None:
        sqlite = tracking_scheme(uri) == "sqlite"
        problem = _sqlite_problem(uri) if sqlite else _driver_problem(uri)
    if problem is not None:
        raise ValueError(f"{field}: {problem}")


def _sqlite_problem(uri: str) -> str | None:
    path = sqlite_path(uri)
    if path is None or "?" in uri:  # URIs with options are left to MLflow
        return None
    if path.is_dir():
        return f"the SQLite store {path} is a folder, not a database file"
    if not path.exists():
        folder = path.parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            return f"the SQLite store {path} cannot be created: {folder} is not a writable folder"
        return None
    if not os.access(path, os.R_OK | os.W_OK):
        return f"the SQLite store {path} is not readable and writable by this user"
    if path.stat().st_size == 0:
        return None  # an empty file is an empty database: MLflow builds its tables there
    try:
        # The header and schema only (a few pages): a whole-file check would take
        # minutes on a large store; damage further in is named by Tracker on use.
        with path.open("rb") as handle:
            if handle.read(16) != b"SQLite format 3\x00":
                raise sqlite3.DatabaseError("file is not a database")
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.OperationalError:
        # A hot journal (a writer killed mid-transaction) cannot be rolled back
        # read-only ("attempt to write a readonly database"); a locked file
        # cannot be read now. Neither is damage: MLflow opens the store
        # read-write and SQLite rolls the journal back.
        return None
    except sqlite3.DatabaseError as err:
        return (
            f"the SQLite store {path} is not a readable SQLite database ({err}); "
            "restore it from a backup, or move it aside to start a new store"
        )
    if tables and "experiments" not in tables:
        return f"the SQLite store {path} is a SQLite database but not an MLflow store"
    return None


def _driver_problem(uri: str) -> str | None:
    """A SQL server URI whose Python database driver is not installed (nothing connects)."""
    if tracking_scheme(uri) not in SQL_SCHEMES:
        return None
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        sqlalchemy.engine.make_url(uri).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        return f"{uri!r} is not a database URI SQLAlchemy reads ({err})"
    except ImportError as err:
        return f"{uri!r} needs a database driver that is not installed ({err})"
    return None
