"""A sweep's locations: whether its tracking store opens and its storage folder can be made,
checked before anything is written (the same check for `validate` as for `run`).

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
- `check_locations(spec)`: `check_store`, and the storage folder must be a
  folder (or creatable) and writable.

"Writable" is tried, not read from the mode bits (root passes every
`os.access`, a read-only mount or /proc passes some): an empty folder is made
in the nearest existing folder and removed at once, which is what `run` will
need to do. Nothing is left behind.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from sweeps.spec import SQL_SCHEMES, Spec, tracking_scheme, uri_problem


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


def check_locations(spec: Spec) -> None:
    """ValueError (one line naming the field) when the store or the storage folder is unusable."""
    check_store(spec.tracking.uri)
    storage = spec.resolved_storage_path()
    problem = folder_problem(storage)
    if problem is not None:
        raise ValueError(f"storage_path: the storage folder {storage} {problem}")


def folder_problem(path: Path) -> str | None:
    """Why folder `path` cannot be used or made (a phrase), or None; leaves nothing behind."""
    if path.exists() and not path.is_dir():
        return "is a file, not a folder"
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be created: {existing} is a file, not a folder"
    try:
        tempfile.TemporaryDirectory(prefix=".granularity-probe-", dir=existing).cleanup()
    except OSError as err:
        verb = "is not writable" if existing == path else "cannot be created"
        return f"{verb}: {existing} refuses a new folder ({err.strerror or err})"
    return None


def _sqlite_problem(uri: str) -> str | None:
    path = sqlite_path(uri)
    if path is None or "?" in uri:  # URIs with options are left to MLflow
        return None
    if path.is_dir():
        return f"the SQLite store {path} is a folder, not a database file"
    if not path.exists():
        problem = folder_problem(path.parent)
        return None if problem is None else f"the SQLite store {path}: its folder {problem}"
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
