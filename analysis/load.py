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
"""

from __future__ import annotations

import math
from typing import Literal

import pandas as pd

# The contract's names (contracts.py): numeric params, trial tags as column names
# without the `granularity.` prefix (`failure` and `attempts` are written by
# sweeps/tracking.py for failed and retried trials).
from contracts import NUMERIC_PARAMS, ROLE_SWEEP, ROLE_TRIAL, TAG_PREFIX, TRIAL_TAGS
from contracts import PARENT as PARENT_TAG
from contracts import ROLE as ROLE_TAG

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")

LoadMethod = Literal["auto", "sql", "search"]


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
    driver (sweeps/tracking.py) keeps reusing.

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


def _frame_from_long(
    runs: pd.DataFrame, params: pd.DataFrame, metrics: pd.DataFrame, tags: pd.DataFrame
) -> pd.DataFrame:
    """Assemble the tidy frame from per-run attributes and long (run_id, key, value) tables."""
    frame = runs.set_index("run_id")
    wide_params = (
        params.pivot(index="run_id", columns="key", values="value")
        if len(params)
        else pd.DataFrame(index=frame.index)
    )
    wide_metrics = (
        metrics.pivot(index="run_id", columns="key", values="value").astype("float64")
        if len(metrics)
        else pd.DataFrame(index=frame.index)
    )
    tag_cols = {TAG_PREFIX + name: name for name in TRIAL_TAGS}
    tags = tags[tags["key"].isin([*tag_cols, PARENT_TAG])]
    wide_tags = (
        tags.pivot(index="run_id", columns="key", values="value")
        if len(tags)
        else pd.DataFrame(index=frame.index)
    )
    wide_tags = wide_tags.rename(columns={**tag_cols, PARENT_TAG: "parent_run_id"})
    for col in [*TRIAL_TAGS, "parent_run_id"]:
        if col not in wide_tags:
            wide_tags[col] = None
    # A metric that repeats a param (e.g. num_classes) fills the param where it is missing.
    clashing = [c for c in wide_metrics.columns if c in wide_params.columns]
    frame = frame.join(wide_params, how="left")
    for col in clashing:
        frame[col] = frame[col].where(frame[col].notna(), wide_metrics[col].reindex(frame.index))
    frame = frame.join(wide_metrics.drop(columns=clashing), how="left")
    frame = frame.join(wide_tags[[*TRIAL_TAGS, "parent_run_id"]], how="left")
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
    """Four set-based queries on MLflow's tables through the raw DB-API cursor (no ORM)."""
    if not experiment_id.isdigit():
        raise ValueError(f"Unexpected experiment id ({experiment_id!r}) in a SQL store")
    status_list = ", ".join(f"'{s}'" for s in statuses)  # statuses are validated upstream
    trial_runs = (
        "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        f"WHERE r.experiment_id = {int(experiment_id)} AND r.lifecycle_stage = 'active' "
        f"AND r.status IN ({status_list}) AND t.key = '{ROLE_TAG}' AND t.value = '{ROLE_TRIAL}'"
    )
    wanted_tags = ", ".join(f"'{TAG_PREFIX}{t}'" for t in TRIAL_TAGS) + f", '{PARENT_TAG}'"
    queries = {
        "runs": (
            "SELECT run_uuid, status, start_time, end_time FROM runs "
            f"WHERE run_uuid IN ({trial_runs})",
            ["run_id", "status", "start_time", "end_time"],
        ),
        "params": (
            f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({trial_runs})",
            ["run_id", "key", "value"],
        ),
        "metrics": (
            "SELECT run_uuid, key, value, is_nan FROM latest_metrics "
            f"WHERE run_uuid IN ({trial_runs})",
            ["run_id", "key", "value", "is_nan"],
        ),
        "tags": (
            f"SELECT run_uuid, key, value FROM tags WHERE key IN ({wanted_tags}) "
            f"AND run_uuid IN ({trial_runs})",
            ["run_id", "key", "value"],
        ),
    }
    engine = _engine(tracking_uri)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        tables = {}
        for name, (sql, columns) in queries.items():
            cursor.execute(sql)
            tables[name] = pd.DataFrame.from_records(cursor.fetchall(), columns=columns)
        cursor.close()
    finally:
        raw.close()
        engine.dispose()
    metrics = tables["metrics"]
    values = metrics["value"].astype("float64")
    metrics["value"] = values.where(~metrics["is_nan"].astype(bool), math.nan)
    for col in ("start_time", "end_time"):
        tables["runs"][col] = pd.to_numeric(tables["runs"][col], errors="coerce").astype("Float64")
    return _frame_from_long(
        tables["runs"], tables["params"], metrics.drop(columns="is_nan"), tables["tags"]
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
    runs = pd.DataFrame(run_rows, columns=["run_id", "status", "start_time", "end_time"])
    for col in ("start_time", "end_time"):
        runs[col] = pd.to_numeric(runs[col], errors="coerce").astype("Float64")
    long_cols = ["run_id", "key", "value"]
    metrics = pd.DataFrame(metric_rows, columns=long_cols)
    metrics["value"] = metrics["value"].astype("float64")
    return _frame_from_long(
        runs,
        pd.DataFrame(param_rows, columns=long_cols),
        metrics,
        pd.DataFrame(tag_rows, columns=long_cols),
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
    allowed = {"FINISHED", "FAILED", "RUNNING", "KILLED", "SCHEDULED"}
    bad = [s for s in statuses if s not in allowed]
    if bad or not statuses:
        raise ValueError(f"Unknown run status ({bad}); accepted: {sorted(allowed)}")
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
