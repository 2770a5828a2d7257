"""The driver's MLflow store for one sweep (`Tracker`): one parent run per sweep, one child per trial.

Only the driver writes (trial processes never touch MLflow); the `Tracker`
creates the store and the experiment before any trial starts. A trial's run
is found by its tag `granularity.trial_key`; a retried, resumed or re-synced
trial continues that run, never a second one. Writes that may be repeated
after an outage (`finish_trial(..., skip_logged=True)`, `open_trial` on an
existing run, epochs filtered by `logged_points`) log only what the run
lacks, so a re-sync never duplicates a metric point. A trial's params, epochs
and final metrics go in one `log_batch` where they arrive together (a short
trial: four MLflow calls in all); trials that ended before any write go in
bulk through `mlflow_sql.insert_runs`. It implements `store.TrackingStore`.
Names come from contracts.py.

Longer than 400 lines because every MLflow write of the contract is one `Tracker` method here
(the driver is the single writer); store creation and bulk SQL live in mlflow_sql.py.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
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
    RUN_NAME,
    SPEC_HASH,
    SPECS_ARTIFACTS,
    SWEEP,
    TAG_PREFIX,
    TRIAL_KEY,
)
from sweeps.ledger.mlflow_sql import NewRun, create_sqlite_store, insert_runs, sql_store
from sweeps.ledger.tracking_uri import default_artifact_location, normalise_uri, sqlite_path
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


class Tracker:
    """The driver's MLflow store for one sweep (experiment = the sweep's name): a TrackingStore."""

    online = True

    def __init__(self, spec: Spec, *, create: bool = True) -> None:
        import sqlalchemy.exc
        from mlflow.tracking import MlflowClient

        self.uri = normalise_uri(spec.tracking.uri)
        self._artifact_root: str | None = None
        self.parent_id: str | None = None  # set by start_parent or join_parent
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

    def join_parent(self) -> str | None:
        """Write to the sweep's existing parent run (without marking it RUNNING); its id, or None."""
        self.parent_id = self.parent_run_id()
        return self.parent_id

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
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Per-epoch metrics `[[step, {name: value}], ...]` (and `params`, `tags`), in one batch."""
        self._log(run_id, metrics=_epoch_metrics(epochs), params=params, tags=tags)

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
        tags: Mapping[str, str] | None = None,
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
            tags={**(tags or {}), **outputs, ATTEMPTS: str(attempts)},
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
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """The failure (tag), with `params`, `tags` and not yet logged `epochs`; FAILED."""
        self._log(
            run_id,
            metrics=_epoch_metrics(epochs),
            params=params,
            tags={**(tags or {}), FAILURE: reason[:4000], ATTEMPTS: str(attempts)},
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
        store = sql_store(self.client)
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

    def _insert_trials(
        self, store: Any, trials: Sequence[WholeTrial], spec_hash: str
    ) -> dict[str, str]:
        """The runs of `trials`, through `mlflow_sql.insert_runs` in one transaction.

        The config artifacts are written first, so a FINISHED run always has its config.
        """
        if self._artifact_root is None:
            self._artifact_root = self.client.get_experiment(self.experiment_id).artifact_location
        root = self._artifact_root
        now = int(time.time() * 1000)
        runs, out = [], {}
        for t in trials:
            run_id = uuid.uuid4().hex
            out[t.key] = run_id
            artifact_uri = f"{root.rstrip('/')}/{run_id}/artifacts"
            tags = {
                **self._trial_tags(t.key, t.tags, spec_hash),
                RUN_NAME: t.run_name,
                ATTEMPTS: str(t.attempts),
            }
            if t.reason is None:
                tags.update({TAG_PREFIX + k: v for k, v in t.result.items() if isinstance(v, str)})
                params = _final_params(t.result, t.params)
                points = _epoch_points(t.epochs) + [
                    (k, 0, v) for k, v in t.result.items() if not isinstance(v, str)
                ]
                self._write_config(run_id, artifact_uri, t.config)
            else:
                tags[FAILURE] = t.reason[:4000]
                params, points = dict(t.params), _epoch_points(t.epochs)
            runs.append(
                NewRun(
                    run_id=run_id,
                    experiment_id=self.experiment_id,
                    name=t.run_name,
                    status="FINISHED" if t.reason is None else "FAILED",
                    start_time=now - int(1000 * (t.wall_s or 0.0)),
                    end_time=now,
                    artifact_uri=artifact_uri,
                    tags=tags,
                    params=params,
                    points=points,
                )
            )
        insert_runs(store, runs)
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
