"""MLflow, the contract of docs/ARCHITECTURE.md: one parent run per sweep, one child per trial.

Only the driver writes (trial processes never touch MLflow); the `Tracker`
creates the store and the experiment before any trial starts, a fresh SQLite
store all or nothing (`create_sqlite_store`). A
trial's run is found by its tag `granularity.trial_key`; a retried, resumed or
re-synced trial continues that run, never a second one. Writes that may be
repeated after an outage (`finish_trial(..., skip_logged=True)`, `open_trial`
on an existing run, epochs filtered by `logged_points`) log only what the run
lacks, so a re-sync never duplicates a metric point. A
trial's params, epochs and final metrics go in one `log_batch` where they
arrive together (a short trial: four MLflow calls in all).

Over ~350 lines on purpose: every MLflow write of the contract is a `Tracker`
method in this one module (the driver is the single writer), with the store's
creation and the writer thread it needs; names come from contracts.py.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import (
    ATTEMPTS,
    CONFIG_ARTIFACT,
    EXPERIMENT_KIND,
    FAILURE,
    HIERARCHIES_ARTIFACTS,
    MODEL_TRAINING,
    NUM_TRAIN,
    PARENT,
    ROLE,
    ROLE_SWEEP,
    ROLE_TRIAL,
    SPEC_HASH,
    SPECS_ARTIFACTS,
    SWEEP,
    TAG_PREFIX,
    TRIAL_KEY,
    cache_root,
)
from sweeps.spec import Spec

_BATCH = 900  # MLflow takes at most 1000 entities per log_batch

# An unreachable tracking server should be noticed in seconds, not minutes
# (MLflow's defaults retry 7 times with exponential backoff, 120 s timeout):
# the driver then keeps the sweep going and syncs later. A user's own
# settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


@dataclass(frozen=True)
class RunState:
    """What MLflow holds about one trial."""

    run_id: str
    status: str  # RUNNING | FINISHED | FAILED | KILLED | SCHEDULED
    failure: str | None
    params: dict[str, str]


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


class Tracker:
    """The driver's MLflow writer for one sweep (experiment = the sweep's name)."""

    def __init__(self, spec: Spec, *, create: bool = True) -> None:
        import sqlalchemy.exc
        from mlflow.tracking import MlflowClient

        self.uri = normalise_uri(spec.tracking.uri)
        self._artifact_root: str | None = None
        create_sqlite_store(self.uri)  # MlflowClient would create it too, but not atomically
        self.name = spec.name
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            experiment = self.client.get_experiment_by_name(spec.name)
        except sqlalchemy.exc.DatabaseError as err:
            db = sqlite_path(self.uri)
            if db is None:
                raise
            raise RuntimeError(
                f"MLflow cannot open the SQLite store {db} "
                f"({err.orig}): a file that is not an MLflow store, or one whose creation "
                "or upgrade was interrupted, stays unreadable; if it holds no runs you "
                "need, delete it and run again"
            ) from None
        if experiment is None:
            if not create:
                self.experiment_id = None
                return
            location = spec.tracking.artifact_location or default_artifact_location(
                spec.tracking.uri, spec.name
            )
            # The kind tag opens the experiment in MLflow's model-training view
            # (runs table, charts), not the GenAI traces overview.
            self.experiment_id = self.client.create_experiment(
                spec.name, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
            )
        else:
            if experiment.lifecycle_stage == "deleted":
                raise ValueError(
                    f"MLflow experiment {spec.name!r} is deleted; restore it "
                    f"(mlflow experiments restore) or rename the sweep"
                )
            self.experiment_id = experiment.experiment_id
            if create and experiment.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
                # A sweep made by an older version, or an experiment MLflow inferred as GenAI.
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)

    # ---- reading ------------------------------------------------------------
    def _search(self, filter_string: str) -> Iterable[Any]:
        if self.experiment_id is None:
            return
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string, max_results=5000, page_token=token
            )
            yield from page
            token = page.token
            if not token:
                break

    def trial_runs(self) -> dict[str, RunState]:
        """trial_key -> its run (trials and search trials; the FINISHED one if there are several)."""
        out: dict[str, RunState] = {}
        for run in self._search(f"tags.`{ROLE}` != '{ROLE_SWEEP}'"):
            key = run.data.tags.get(TRIAL_KEY)
            if not key:
                continue
            state = RunState(
                run.info.run_id, run.info.status, run.data.tags.get(FAILURE), dict(run.data.params)
            )
            if key not in out or (state.status == "FINISHED" and out[key].status != "FINISHED"):
                out[key] = state
        return out

    def parent_run_id(self) -> str | None:
        runs = list(self._search(f"tags.`{ROLE}` = '{ROLE_SWEEP}'"))
        runs.sort(key=lambda r: r.info.start_time or 0)
        return runs[0].info.run_id if runs else None

    def parent_params(self) -> dict[str, str]:
        run_id = self.parent_run_id()
        return dict(self.client.get_run(run_id).data.params) if run_id else {}

    # ---- the parent run -----------------------------------------------------
    def start_parent(self, spec: Spec, spec_text: str) -> str:
        """Find or create the sweep's parent run and mark it RUNNING."""
        run_id = self.parent_run_id()
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=spec.name,
                tags={ROLE: ROLE_SWEEP, SWEEP: spec.name, SPEC_HASH: spec.spec_hash()},
            )
            run_id = run.info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, SPEC_HASH, spec.spec_hash())
        self.client.log_text(run_id, spec_text, f"{SPECS_ARTIFACTS}/{spec.spec_hash()}.json")
        self.parent_id = run_id
        return run_id

    def log_parent_params(self, params: Mapping[str, Any]) -> None:
        """Params of the parent run (search results); a value once set stays."""
        existing = self.client.get_run(self.parent_id).data.params
        new = {k: str(v) for k, v in params.items() if k not in existing}
        self._log(self.parent_id, params=new)

    def tag_parent(self, tags: Mapping[str, str]) -> None:
        """Tags of the parent run (the adaptive-replicates design)."""
        self._log(self.parent_id, tags=tags)

    def log_hierarchies(self, paths: Iterable[Path]) -> None:
        """Hierarchy JSON files as parent-run artifacts under `hierarchies/`."""
        have = {
            Path(f.path).name
            for f in self.client.list_artifacts(self.parent_id, HIERARCHIES_ARTIFACTS)
        }
        for path in paths:
            if Path(path).name not in have:
                self.client.log_artifact(self.parent_id, str(path), HIERARCHIES_ARTIFACTS)

    def end_parent(self, status: str) -> None:
        self.client.set_terminated(self.parent_id, status=status)

    # ---- trial runs ---------------------------------------------------------
    def open_trial(
        self,
        existing: RunState | None,
        *,
        key: str,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        spec_hash: str,
    ) -> str:
        """The trial's run, RUNNING: the existing one continued, or a new child of the parent.

        `params` are logged now (an existing run gets those it lacks); a new
        run may pass none and log them with its first batch of metrics.
        """
        if existing is not None:
            self.client.update_run(existing.run_id, status="RUNNING")
            if existing.failure:
                self.client.delete_tag(existing.run_id, FAILURE)
            # A driver killed between creating the run and logging its params.
            missing = {k: v for k, v in params.items() if k not in existing.params}
            if missing:
                self._log(existing.run_id, params=missing)
            return existing.run_id
        all_tags = self._trial_tags(key, tags, spec_hash)
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        self._log(run.info.run_id, params=params)
        return run.info.run_id

    def log_epochs(
        self,
        run_id: str,
        epochs: Sequence[Sequence[Any]],
        *,
        params: Mapping[str, str] | None = None,
    ) -> None:
        """Per-epoch metrics `[[step, {name: value}], ...]` (and `params`), in one batch."""
        self._log(run_id, metrics=_epoch_metrics(epochs), params=params)

    def logged_points(self, run_id: str) -> set[tuple[str, int]]:
        """(metric, step) pairs a run already holds."""
        names = self.client.get_run(run_id).data.metrics
        return {
            (name, m.step) for name in names for m in self.client.get_metric_history(run_id, name)
        }

    def finish_trial(
        self,
        run_id: str,
        *,
        result: Mapping[str, float],
        config: Mapping[str, Any],
        attempts: int,
        params: Mapping[str, str] | None = None,
        epochs: Sequence[Sequence[Any]] = (),
        skip_logged: bool = False,
    ) -> None:
        """Final metrics (with `params` and not yet logged `epochs`), the config artifact, FINISHED.

        One `log_batch` carries it all. `skip_logged`: leave out final metrics
        and params the run already holds (a re-sync).
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in result.items() if not isinstance(v, str)]
        outputs = {TAG_PREFIX + k: v for k, v in result.items() if isinstance(v, str)}
        extra = _final_params(result, params)
        if skip_logged:
            data = self.client.get_run(run_id).data
            metrics = [m for m in metrics if not _same(data.metrics.get(m.key), m.value)]
            extra = {k: v for k, v in extra.items() if k not in data.params}
        self._log(
            run_id,
            metrics=_epoch_metrics(epochs) + metrics,
            params=extra,
            tags={**outputs, ATTEMPTS: str(attempts)},
        )
        config_text = json.dumps(config, indent=2, sort_keys=True)
        self.client.log_text(run_id, config_text, CONFIG_ARTIFACT)
        self.client.set_terminated(run_id, status="FINISHED")

    def fail_trial(
        self,
        run_id: str,
        *,
        reason: str,
        attempts: int,
        params: Mapping[str, str] | None = None,
        epochs: Sequence[Sequence[Any]] = (),
    ) -> None:
        """The failure (tag), with `params` and not yet logged `epochs`; FAILED."""
        self._log(
            run_id,
            metrics=_epoch_metrics(epochs),
            params=params,
            tags={FAILURE: reason[:4000], ATTEMPTS: str(attempts)},
        )
        self.client.set_terminated(run_id, status="FAILED")

    def set_status(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def _trial_tags(self, key: str, tags: Mapping[str, str], spec_hash: str) -> dict[str, str]:
        return {
            ROLE: ROLE_TRIAL,
            PARENT: self.parent_id,
            TRIAL_KEY: key,
            SPEC_HASH: spec_hash,
            **tags,
        }

    # ---- whole trials at once -----------------------------------------------
    def record_trials(self, trials: Sequence[WholeTrial], spec_hash: str) -> dict[str, str]:
        """Trials that have no run yet and ended, each as one new FINISHED or FAILED run.

        trial_key -> run id. On a SQL store every trial of the call goes in one
        transaction (all or none: a killed driver leaves no half-written run,
        and the result files re-sync the lot); that is what lets the driver keep
        up with hundreds of short trials a second (the per-trial calls below are
        four to five transactions each, ~60 ms on SQLite). Other stores (an http
        server) get the per-trial calls.
        """
        store = self._sql_store()
        if store is None:
            out = {}
            for t in trials:
                run_id = self.open_trial(
                    None,
                    key=t.key,
                    run_name=t.run_name,
                    tags=t.tags,
                    params={},
                    spec_hash=spec_hash,
                )
                if t.reason is None:
                    self.finish_trial(
                        run_id,
                        result=t.result,
                        config=t.config,
                        attempts=t.attempts,
                        params=t.params,
                        epochs=t.epochs,
                    )
                else:
                    self.fail_trial(
                        run_id,
                        reason=t.reason,
                        attempts=t.attempts,
                        params=t.params,
                        epochs=t.epochs,
                    )
                out[t.key] = run_id
            return out
        return self._insert_trials(store, trials, spec_hash)

    def _sql_store(self) -> Any:
        """MLflow's SQLAlchemy store behind the client, or None (another store, or a wrapped client)."""
        from mlflow.tracking import MlflowClient

        if type(self.client) is not MlflowClient:
            return None
        try:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = self.client._tracking_client.store  # private: checked by its type
        except (ImportError, AttributeError):
            return None
        return store if isinstance(store, SqlAlchemyStore) else None

    def _insert_trials(
        self, store: Any, trials: Sequence[WholeTrial], spec_hash: str
    ) -> dict[str, str]:
        """The rows `create_run`, `log_batch`, `log_text` and `set_terminated` would write, in one go.

        MLflow's tables through its SQLAlchemy models (a private API, as
        analysis/simulate.py's bulk writer; tests/test_sweeps_tracking.py checks
        the runs read back as the per-trial calls write them). The config
        artifacts are written first, so a FINISHED run always has its config.
        """
        import sqlalchemy
        from mlflow.store.tracking.dbmodels import models

        if self._artifact_root is None:
            self._artifact_root = self.client.get_experiment(self.experiment_id).artifact_location
        root = self._artifact_root
        now = int(time.time() * 1000)
        runs, tags, params, metrics, latest = [], [], [], [], []
        out = {}
        for t in trials:
            run_id = uuid.uuid4().hex
            out[t.key] = run_id
            artifact_uri = f"{root.rstrip('/')}/{run_id}/artifacts"
            status = "FINISHED" if t.reason is None else "FAILED"
            start = now - int(1000 * (t.wall_s or 0.0))
            runs.append(
                {
                    "run_uuid": run_id,
                    "name": t.run_name,
                    "source_type": "UNKNOWN",
                    "source_name": "",
                    "entry_point_name": "",
                    "user_id": "unknown",
                    "status": status,
                    "start_time": start,
                    "end_time": now,
                    "deleted_time": None,
                    "source_version": "",
                    "lifecycle_stage": "active",
                    "artifact_uri": artifact_uri,
                    "experiment_id": int(self.experiment_id),
                }
            )
            run_tags = {
                **self._trial_tags(t.key, t.tags, spec_hash),
                "mlflow.runName": t.run_name,
                ATTEMPTS: str(t.attempts),
            }
            if t.reason is None:
                run_tags.update(
                    {TAG_PREFIX + k: v for k, v in t.result.items() if isinstance(v, str)}
                )
                run_params = _final_params(t.result, t.params)
                points = _epoch_points(t.epochs) + [
                    (k, 0, v) for k, v in t.result.items() if not isinstance(v, str)
                ]
            else:
                run_tags[FAILURE] = t.reason[:4000]
                run_params = dict(t.params)
                points = _epoch_points(t.epochs)
            tags.extend(
                {"key": k, "value": str(v), "run_uuid": run_id} for k, v in run_tags.items()
            )
            params.extend(
                {"key": k, "value": str(v), "run_uuid": run_id} for k, v in run_params.items()
            )
            last: dict[tuple[str, int], float] = {}
            for name, step, value in points:  # one point per (metric, step), the last reported
                last[(name, step)] = float(value)
            newest: dict[str, dict[str, Any]] = {}
            for (name, step), value in last.items():
                is_nan, stored = store.sanitize_metric_value(value)
                row = {
                    "key": name,
                    "value": stored,
                    "timestamp": now,
                    "step": step,
                    "is_nan": is_nan,
                    "run_uuid": run_id,
                }
                metrics.append(row)
                best = newest.get(name)
                if best is None or (step, stored) > (best["step"], best["value"]):
                    newest[name] = row
            latest.extend(newest.values())
            if t.reason is None:
                self._write_config(run_id, artifact_uri, t.config)
        with store.ManagedSessionMaker(read_only=False) as session:
            for model, rows in (
                (models.SqlRun, runs),
                (models.SqlTag, tags),
                (models.SqlParam, params),
                (models.SqlMetric, metrics),
                (models.SqlLatestMetric, latest),
            ):
                if rows:
                    session.execute(sqlalchemy.insert(model.__table__), rows)
        return out

    def _write_config(self, run_id: str, artifact_uri: str, config: Mapping[str, Any]) -> None:
        """The run's `config.json` artifact: a plain file write for a local artifact store."""
        text = json.dumps(config, indent=2, sort_keys=True)
        if artifact_uri.startswith("file://"):
            from urllib.parse import unquote, urlparse

            folder = Path(unquote(urlparse(artifact_uri).path))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / CONFIG_ARTIFACT).write_text(text)
        else:
            self.client.log_text(run_id, text, CONFIG_ARTIFACT)

    # ---- batching -----------------------------------------------------------
    def _log(
        self,
        run_id: str,
        *,
        metrics: Sequence[Any] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Param, RunTag

        params_list = [Param(k, str(v)) for k, v in (params or {}).items()]
        tags_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        metrics = list(metrics)
        # log_batch caps: 100 params, 100 tags, 1000 entities in all.
        while params_list or tags_list or metrics:
            p, params_list = params_list[:100], params_list[100:]
            t, tags_list = tags_list[:100], tags_list[100:]
            room = _BATCH - len(p) - len(t)
            m, metrics = metrics[:room], metrics[room:]
            self.client.log_batch(run_id, metrics=m, params=p, tags=t)


class WriteQueue:
    """Runs the driver's MLflow writes in order on one background thread.

    Ray Tune's function trainables block in `tune.report` until the driver's
    Tune loop has handled the result, so a write made inside the loop stalls
    the worker that reported: with SQLite, the quickstart's workers spent
    ~30 s of its ~60 s waiting on MLflow. The loop hands its writes here and
    goes on; `close` waits for every write handed over.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="granularity-mlflow", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], Any]) -> None:
        """Queue `write` (it handles its own errors: one that raises is dropped)."""
        self._queue.put(write)

    def _loop(self) -> None:
        while True:
            write = self._queue.get()
            if write is None:
                return
            try:
                write()
            except Exception:  # noqa: BLE001 (callers record failures themselves)
                pass

    def close(self) -> None:
        """Wait for every queued write, then stop the thread."""
        self._queue.put(None)
        self._thread.join()


def _epoch_metrics(epochs: Sequence[Sequence[Any]]) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(name, float(value), now, int(step))
        for step, values in epochs
        for name, value in values.items()
    ]


@dataclass(frozen=True)
class WholeTrial:
    """A trial that ended before any of its writes reached MLflow: one run, written at once."""

    key: str
    run_name: str
    tags: Mapping[str, str]  # beside the trial tags every run gets
    params: Mapping[str, str]
    epochs: Sequence[Sequence[Any]]  # [[step, {name: value}], ...]
    config: Mapping[str, Any]
    attempts: int
    result: Mapping[str, Any] | None = None  # a finished trial's final metrics (and string outputs)
    reason: str | None = None  # a failed trial's
    wall_s: float | None = None


def _final_params(result: Mapping[str, Any], params: Mapping[str, str] | None) -> dict[str, str]:
    """`params` plus those the final result fills in (`num_train`, known only once the trial ran)."""
    extra = dict(params or {})
    for name in (NUM_TRAIN,):
        if name in result and math.isfinite(float(result[name])):
            extra[name] = str(int(result[name]))
    return extra


def _epoch_points(epochs: Sequence[Sequence[Any]]) -> list[tuple[str, int, float]]:
    return [(name, int(step), value) for step, values in epochs for name, value in values.items()]


def _same(logged: float | None, value: float) -> bool:
    if logged is None:
        return False
    return logged == value or (math.isnan(logged) and math.isnan(value))
