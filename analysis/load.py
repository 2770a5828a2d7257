"""Read a sweep's trial runs from MLflow into one tidy pandas row per trial.

Two readers give the same frame:

- ``sql``: for SQL tracking stores (``sqlite:///...``, ``postgresql://...``,
  ``mysql://...``) four set-based queries on MLflow's own tables (runs, tags,
  params, latest_metrics). 10,000 runs load in well under a second.
- ``search``: paged ``MlflowClient.search_runs``, for ``http(s)://`` tracking
  servers (and as a cross-check). MLflow builds a full entity per run, so this
  is one to two orders of magnitude slower at 10,000 runs (see
  bench/bench_analysis.py for the measured figures).

``method="auto"`` picks ``sql`` for a database URI and ``search`` otherwise.

Longer than 400 lines because its two readers (sql, search) must return the same frame and share
the pivot into it; apart, the code that has to agree would drift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

# The contract's names (contracts.py): numeric params, trial tags as column names
# without the `granularity.` prefix (`failure` and `attempts` are written by
# sweeps/ledger/mlflow_store.py for failed and retried trials).
from contracts import NUMERIC_PARAMS, ROLE_SWEEP, ROLE_TRIAL, TAG_PREFIX, TRIAL_TAGS
from contracts import PARENT as PARENT_TAG
from contracts import ROLE as ROLE_TAG

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# Tag key -> column: the trial tags without their prefix, and the parent run.
TAG_COLUMNS = {TAG_PREFIX + name: name for name in TRIAL_TAGS} | {PARENT_TAG: "parent_run_id"}

LoadMethod = Literal["auto", "sql", "search"]
ALL_STATUSES = ("FINISHED", "FAILED", "RUNNING", "KILLED", "SCHEDULED")


@dataclass(frozen=True)
class Sweep:
    """What a report is made from: a sweep's trial runs of every status and its parent run's tags.

    Read from MLflow (``load_sweep``) or from an export file (analysis.export.read_export); the
    report is the same either way.
    """

    experiment: str
    runs: pd.DataFrame  # one row per trial run of any status (load_runs' columns)
    sweep_tags: dict[str, str] = field(default_factory=dict)  # the parent run's granularity.* tags

    def finished(self) -> pd.DataFrame:
        """The finished trials: what the estimators fit."""
        return self.runs[self.runs["status"] == "FINISHED"].reset_index(drop=True)


class ExperimentNotFoundError(LookupError):
    """The named experiment is not in the tracking store."""


def _is_sql_uri(tracking_uri: str) -> bool:
    scheme = tracking_uri.split(":", 1)[0].split("+", 1)[0].lower()
    return scheme in SQL_SCHEMES


def _check_sqlite_file(tracking_uri: str) -> None:
    """Refuse a sqlite URI whose file does not exist (MLflow would silently create it)."""
    if tracking_uri.startswith("sqlite:///") and tracking_uri != "sqlite:///:memory:":
        import os

        path = tracking_uri[len("sqlite:///") :]
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No MLflow store at {path!r} (tracking URI {tracking_uri}); "
                "pass --tracking-uri pointing at the sweep's store"
            )


def _engine(tracking_uri: str):
    import sqlalchemy

    _check_sqlite_file(tracking_uri)
    return sqlalchemy.create_engine(tracking_uri)


def list_experiments(tracking_uri: str) -> list[str]:
    """Names of the active experiments in the store (for error messages)."""
    if _is_sql_uri(tracking_uri):
        import sqlalchemy

        with _engine(tracking_uri).connect() as conn:
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT name FROM experiments WHERE lifecycle_stage = 'active' ORDER BY name"
                )
            ).fetchall()
        return [r[0] for r in rows]
    from mlflow.tracking import MlflowClient

    return sorted(e.name for e in MlflowClient(tracking_uri).search_experiments())


def _experiment_id(tracking_uri: str, experiment: str) -> str:
    if _is_sql_uri(tracking_uri):
        import sqlalchemy

        with _engine(tracking_uri).connect() as conn:
            row = conn.execute(
                sqlalchemy.text(
                    "SELECT experiment_id FROM experiments "
                    "WHERE name = :name AND lifecycle_stage = 'active'"
                ),
                {"name": experiment},
            ).fetchone()
        found = None if row is None else str(row[0])
    else:
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
        found = None if exp is None or exp.lifecycle_stage != "active" else exp.experiment_id
    if found is None:
        known = list_experiments(tracking_uri)
        raise ExperimentNotFoundError(
            f"Unknown experiment ({experiment}) at {tracking_uri}; "
            f"known: {', '.join(known) if known else 'none'}"
        )
    return found


def find_sweep_run(experiment: str, tracking_uri: str = "sqlite:///mlflow.db") -> str | None:
    """Run id of the sweep's parent run (tag ``granularity.role=sweep``).

    Should there be several, the first created wins: it is the one the sweep
    driver (sweeps/ledger/mlflow_store.py) keeps reusing.

    Returns None when the experiment has no parent run. Raises
    ``ExperimentNotFoundError`` for an unknown experiment.
    """
    from mlflow.tracking import MlflowClient

    experiment_id = _experiment_id(tracking_uri, experiment)
    runs = MlflowClient(tracking_uri).search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = '{ROLE_SWEEP}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


class _Positions(dict):
    """Name -> position, answering -1 for a name it does not hold.

    ``np.fromiter(map(positions.__getitem__, names), ...)`` then maps a million
    names to positions at dict speed (a pandas indexer hashes them ~3x slower),
    marking the ones to leave out.
    """

    @classmethod
    def of(cls, names: Sequence) -> _Positions:
        return cls((name, i) for i, name in enumerate(names))

    def __missing__(self, key: object) -> int:
        return -1


class _Long(NamedTuple):
    """A long table of (run_id, key, value) rows, as three aligned arrays."""

    run_ids: np.ndarray
    keys: np.ndarray
    values: np.ndarray


def _table(rows: list[tuple], width: int) -> np.ndarray:
    """``[n, width]`` object array of DB-API rows: one C pass (``DataFrame.from_records`` takes
    ~5x longer, most of it inferring dtypes of columns that are pivoted away)."""
    return np.array(rows, dtype=object).reshape(len(rows), width)


def _long(table: np.ndarray) -> _Long:
    """The first three columns of ``table`` as a long (run_id, key, value) table."""
    return _Long(table[:, 0], table[:, 1], table[:, 2])


def _positions(names: np.ndarray, positions: _Positions) -> np.ndarray:
    return np.fromiter(map(positions.__getitem__, names), dtype=np.intp, count=len(names))


def _pivot(
    rows: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    n_rows: int,
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Long (row, key, value) triples -> one column of ``n_rows`` values per key.

    ``rows[i]`` is triple i's output row (-1: left out). The keys are those of
    the triples kept, sorted (as ``DataFrame.pivot`` orders them), or ``names``
    where given. A (run, key) pair occurs once (it is the MLflow table's primary
    key). A missing value is NaN in a float column, else None.
    """
    kept = rows >= 0
    names = sorted(set(keys[kept])) if names is None else list(names)
    columns = _positions(keys, _Positions.of(names))
    kept &= columns >= 0
    numeric = values.dtype.kind == "f"
    wide = np.full((n_rows, len(names)), np.nan if numeric else None, dtype=values.dtype)
    wide[rows[kept], columns[kept]] = values[kept]
    return {name: wide[:, j] for j, name in enumerate(names)}


def _frame_from_long(runs: np.ndarray, params: _Long, metrics: _Long, tags: _Long) -> pd.DataFrame:
    """The tidy frame from ``[n, 4]`` runs (run_id, status, start_time, end_time) and the long
    tables of params, metrics (float values, NaN for a NaN metric) and tags.

    One row per run of ``runs`` tagged ``granularity.role=trial``: ``runs`` and the
    long tables may hold the experiment's other runs (the sweep's own, cells),
    and a long row whose run is not in ``runs`` is left out (a run created
    between two queries).
    """
    every = _Positions.of(runs[:, 0])
    role = _pivot(_positions(tags.run_ids, every), tags.keys, tags.values, len(runs), [ROLE_TAG])
    trial = runs[role[ROLE_TAG] == ROLE_TRIAL]
    index = pd.Index(trial[:, 0], name="run_id")
    at = _Positions.of(trial[:, 0])

    def wide(long: _Long, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        return _pivot(_positions(long.run_ids, at), long.keys, long.values, len(trial), names)

    wide_params, wide_metrics = wide(params), wide(metrics)
    wide_tags = wide(tags, list(TAG_COLUMNS))
    columns: dict[str, object] = {"status": trial[:, 1]}
    for i, col in ((2, "start_time"), (3, "end_time")):
        columns[col] = pd.Series(pd.to_numeric(trial[:, i], errors="coerce"), index=index)
    columns.update(wide_params)
    columns.update((k, v) for k, v in wide_metrics.items() if k not in wide_params)
    columns.update((TAG_COLUMNS[k], v) for k, v in wide_tags.items())
    frame = pd.DataFrame(columns, index=index)  # object columns of strings become `str`
    for col in ("start_time", "end_time"):
        frame[col] = frame[col].astype("Float64")
    # A metric that repeats a param (e.g. num_classes) fills the param where it is missing.
    for col in (c for c in wide_metrics if c in wide_params):
        frame[col] = frame[col].where(frame[col].notna(), pd.Series(wide_metrics[col], index))
    for col in NUMERIC_PARAMS:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame = frame.reset_index()
    # A retried trial continues its own run; should two finished runs share a key, keep the latest.
    if frame["trial_key"].notna().any():
        frame = frame.sort_values("end_time", kind="stable")
        keyed = frame["trial_key"].notna()
        frame = pd.concat([frame[keyed].drop_duplicates("trial_key", keep="last"), frame[~keyed]])
    ordered = ["run_id", "parent_run_id", "status", "start_time", "end_time", *TRIAL_TAGS]
    rest = sorted(c for c in frame.columns if c not in ordered)
    frame = frame[ordered + rest].sort_values(["start_time", "run_id"], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.columns.name = None
    return frame


def _load_sql(tracking_uri: str, experiment_id: str, statuses: tuple[str, ...]) -> pd.DataFrame:
    """Four set-based queries on MLflow's tables through the raw DB-API cursor (no ORM).

    The long tables are filtered by the experiment's runs, not by its trial
    runs: that takes a join with the tags table, which, repeated in three
    subqueries, cost more than the reading (0.4 s each at 100,000 runs in
    SQLite). The role tag comes with the other tags and picks the trials. Tags
    are not filtered by key in SQL either: SQLite then seeks the (key, run)
    index once per key and run, 2.5x slower than reading the few unwanted tags.
    """
    if not experiment_id.isdigit():
        raise ValueError(f"Unexpected experiment id ({experiment_id!r}) in a SQL store")
    status_list = ", ".join(f"'{s}'" for s in statuses)  # statuses are validated upstream
    of_runs = (
        f"FROM runs WHERE experiment_id = {int(experiment_id)} AND lifecycle_stage = 'active' "
        f"AND status IN ({status_list})"
    )
    in_runs = f"run_uuid IN (SELECT run_uuid {of_runs})"
    queries = {
        "runs": (f"SELECT run_uuid, status, start_time, end_time {of_runs}", 4),
        "params": (f"SELECT run_uuid, key, value FROM params WHERE {in_runs}", 3),
        "metrics": (
            f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE {in_runs}",
            4,
        ),
        "tags": (f"SELECT run_uuid, key, value FROM tags WHERE {in_runs}", 3),
    }
    engine = _engine(tracking_uri)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        tables = {}
        for name, (sql, width) in queries.items():
            cursor.execute(sql)
            tables[name] = _table(cursor.fetchall(), width)
        cursor.close()
    finally:
        raw.close()
        engine.dispose()
    metrics = tables["metrics"]
    values = metrics[:, 2].astype("float64")
    values[metrics[:, 3].astype(bool)] = math.nan
    return _frame_from_long(
        tables["runs"],
        _long(tables["params"]),
        _long(metrics)._replace(values=values),
        _long(tables["tags"]),
    )


def _load_search(
    tracking_uri: str, experiment_id: str, statuses: tuple[str, ...], page_size: int = 1000
) -> pd.DataFrame:
    """Paged MlflowClient.search_runs: works against any tracking server."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    status_filter = " OR ".join(f"attributes.status = '{s}'" for s in statuses)
    filter_string = f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'"
    if len(statuses) == 1:
        filter_string += f" AND {status_filter}"
    run_rows, param_rows, metric_rows, tag_rows = [], [], [], []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=page_size, page_token=token
        )
        for run in page:
            info = run.info
            if info.status not in statuses or info.lifecycle_stage != "active":
                continue
            rid = info.run_id
            run_rows.append((rid, info.status, info.start_time, info.end_time))
            param_rows.extend((rid, k, v) for k, v in run.data.params.items())
            metric_rows.extend((rid, k, v) for k, v in run.data.metrics.items())
            tag_rows.extend((rid, k, v) for k, v in run.data.tags.items())
        token = page.token
        if not token:
            break
    metrics = _long(_table(metric_rows, 3))
    return _frame_from_long(
        _table(run_rows, 4),
        _long(_table(param_rows, 3)),
        metrics._replace(values=metrics.values.astype("float64")),
        _long(_table(tag_rows, 3)),
    )


def load_runs(
    experiment: str,
    tracking_uri: str = "sqlite:///mlflow.db",
    *,
    statuses: tuple[str, ...] = ("FINISHED",),
    method: LoadMethod = "auto",
) -> pd.DataFrame:
    """One tidy row per trial run (tag ``granularity.role=trial``) of an experiment.

    Columns: ``run_id``, ``parent_run_id``, ``status``, ``start_time``, ``end_time``
    (ms), the contract tags without their prefix (``trial_key``, ``pretrain_key``,
    ``label_fn``, ``spec_hash``), every param under its own name (``level``,
    ``num_classes``, ``data_fraction``, ``num_train`` and ``seed`` as numbers, the
    rest as strings) and every metric's latest value under its own name
    (``target_error``, ``align/nmi``...; a missing metric is NaN). Rows are in
    start order. Only runs whose status is in ``statuses`` are returned (default:
    finished trials); pass ``("FINISHED", "FAILED", "RUNNING", "KILLED",
    "SCHEDULED")`` to count failures.

    Example:
        >>> df = load_runs("quickstart", "sqlite:///mlflow.db")  # doctest: +SKIP
        >>> df.groupby(["hierarchy", "level"]).target_error.mean()  # doctest: +SKIP
    """
    check_statuses(statuses)
    if method not in ("auto", "sql", "search"):
        raise ValueError(f"Unknown load method ({method}); accepted: auto, sql, search")
    if method == "sql" and not _is_sql_uri(tracking_uri):
        raise ValueError(
            f"method='sql' needs a database tracking URI (sqlite:///, postgresql://...), "
            f"got {tracking_uri}"
        )
    experiment_id = _experiment_id(tracking_uri, experiment)
    use_sql = method == "sql" or (method == "auto" and _is_sql_uri(tracking_uri))
    if use_sql:
        return _load_sql(tracking_uri, experiment_id, tuple(statuses))
    return _load_search(tracking_uri, experiment_id, tuple(statuses))


def check_statuses(statuses: Sequence[str]) -> None:
    """Raise ValueError naming any status that is not an MLflow run status."""
    bad = [s for s in statuses if s not in ALL_STATUSES]
    if bad or not statuses:
        raise ValueError(f"Unknown run status ({bad}); accepted: {sorted(ALL_STATUSES)}")


def load_sweep(experiment: str, tracking_uri: str = "sqlite:///mlflow.db") -> Sweep:
    """The experiment's trial runs of every status and its parent run's ``granularity.*`` tags.

    Example:
        >>> sweep = load_sweep("quickstart", "sqlite:///mlflow.db")  # doctest: +SKIP
        >>> sweep.runs["status"].value_counts()  # doctest: +SKIP
    """
    runs = load_runs(experiment, tracking_uri, statuses=ALL_STATUSES)
    parent_id = find_sweep_run(experiment, tracking_uri)
    tags: dict[str, str] = {}
    if parent_id is not None:
        from mlflow.tracking import MlflowClient

        every = MlflowClient(tracking_uri).get_run(parent_id).data.tags
        tags = {k: v for k, v in sorted(every.items()) if k.startswith(TAG_PREFIX)}
    return Sweep(experiment=experiment, runs=runs, sweep_tags=tags)
