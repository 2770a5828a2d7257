"""The orchestrator: spec -> plan -> skip what is done -> packs on Ray -> MLflow.

`run_sweep` is `granularity run`. Order of business, each step safe to kill:

1. validate the spec and expand the plan (an invalid spec stops here, before
   MLflow is touched; a sweep with no results yet starts Ray once the cheap
   checks pass, so it comes up while the arms' hierarchies are built);
2. take the sweep's driver lock (`<storage>/driver.lock`; one driver per sweep)
   and claim the sweep (`driver.json`: workers a killed driver left behind
   stop at their next trial, see sweeps/lock.py);
3. create the MLflow store, experiment and parent run (before any trial runs:
   the driver is the single writer; a server unreachable now: the sweep runs
   offline and syncs at the end or later, see sweeps/ledger/offline.py);
4. wait (bounded) for such workers to stop, then sync every result file
   under `<storage>/results/` that MLflow lacks (what a killed driver, or a
   tracking outage, left behind; `granularity sync` does this step alone);
5. optionally tune continuous settings with Optuna (`sweeps.search`);
6. run the trials whose MLflow run is not FINISHED, packed, on Ray, logging
   each event as it arrives; with a `replicates:` block, in rounds
   (sweeps/rounds.py): each round adds seeds only where a comparison is open.

MLflow writes during the sweep never stop it: a write that fails (the
tracking server unreachable) is skipped for that trial, which is then
"pending sync"; its result (or failure) is on disk under `<storage>/results/`
and is written to MLflow at the end of the run if the server is back, else
by the next `run` or `granularity sync` (never twice: see sweeps/ledger/mlflow_store.py).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from contracts import ANALYSIS_CONFIG, REPLICATES
from sweeps.code_version import retire, stale_line, stale_trials
from sweeps.executor import Executor
from sweeps.interrupt import interruptible
from sweeps.ledger.ledger import replay_journal
from sweeps.ledger.offline import connect, reconnect
from sweeps.ledger.records import result_path
from sweeps.ledger.tracking_uri import check_locations
from sweeps.lock import claim_sweep, driver_lock, wait_for_workers
from sweeps.packs import Trainable
from sweeps.plan import build_plan
from sweeps.rounds import round_tags, run_rounds
from sweeps.spec import Spec, SpecError, canonical_json
from sweeps.summary import RunSummary, summarise
from sweeps.trials import Plan


def resolve_trainable(spec: Spec, trainable: Trainable | None = None) -> Trainable:
    """The callable that runs one trial: `trainable` if given, else the spec's `module:function`."""
    if trainable is not None:
        return trainable
    module_name, _, attr = spec.trainable.partition(":")
    try:
        module = importlib.import_module(module_name)
        fn = getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise SpecError([f"trainable: {spec.trainable!r} cannot be imported: {err}"]) from None
    problem = trainable_problem(fn)
    if problem:
        raise SpecError(
            [f"trainable: {spec.trainable!r} {problem}; expected a function train(config, report)"]
        )
    return fn


def trainable_problem(fn: Any) -> str | None:
    """Why `fn` cannot be called as `fn(config, report)`, or None."""
    if not callable(fn):
        return f"is a {type(fn).__name__}, not callable"
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: left to the call
    try:
        signature.bind({}, None)
    except TypeError as err:
        return f"has the signature {signature}, which cannot take (config, report): {err}"
    return None


def run_sweep(
    spec: Spec,
    *,
    trainable: Trainable | None = None,
    address: str | None = None,
    verbose: bool = False,
    stream: TextIO | None = None,
    dataset: Any | None = None,
    reuse_stale: bool = False,
) -> tuple[RunSummary, Plan]:
    """Run (or resume, or extend) a sweep; returns its summary and plan.

    `trainable(config, report) -> dict` defaults to the spec's (`trainables:train`).
    Done trials made by other code (sweeps/code_version.py) run again unless
    `reuse_stale`.
    """
    started = time.monotonic()
    fn = resolve_trainable(spec, trainable)
    storage = spec.resolved_storage_path()
    check_locations(spec)  # a store or storage that cannot be made: refused before anything is
    ray = RayStart(spec, storage, address, verbose)
    try:
        # validates first; Ray starts once the cheap checks pass, while kMeans builds hierarchies
        plan = build_plan(spec, dataset=dataset, write=False, storage=storage, on_checked=ray.early)
        storage.mkdir(parents=True, exist_ok=True)
        invocation = uuid.uuid4().hex[:12]
        lock = driver_lock(storage, "another `granularity run` is driving this sweep")
        with lock, interruptible():
            claim_sweep(storage, invocation)  # a killed driver's workers stop at their next trial
            return _run_locked(
                spec,
                plan,
                fn,
                storage,
                address,
                verbose,
                stream,
                dataset,
                started,
                invocation,
                ray,
                reuse_stale,
            )
    finally:
        ray.close()  # the executor closed it after its trials; else a refusal or a second driver


def _stale(plan: Plan, storage: Path, stream: TextIO | None, *, reuse: bool) -> set[str]:
    """Keys of the done trials made by other code, set aside to rerun (none if `reuse`); says so."""
    stale = stale_trials(plan, storage)
    if not stale:
        return set()
    current = plan.trials[0].config["code_version"]
    print(stale_line(stale, current, reuse=reuse), file=stream or sys.stdout, flush=True)
    if reuse:
        return set()
    retire(storage, [t for t in plan.trials if t.trial_key in stale])
    return set(stale)


class RayStart:
    """The sweep's one Ray: the one place that decides when it starts, and starts it (once).

    A sweep with no result files yet runs every trial, so its Ray comes up
    (`early()`, before the plan) while the driver builds the arms' hierarchies
    (seconds of kMeans); a sweep with results may need no Ray at all (everything
    done), so `early(plan)` decides after the plan, while MLflow is set up. Else
    the executor's first trial starts it (`session()`: a stale trial, a later round).
    """

    def __init__(self, spec: Spec, storage: Path, address: str | None, verbose: bool) -> None:
        self._spec, self._storage, self._address, self._verbose = spec, storage, address, verbose
        self._session: Any = None

    def may_run(self, plan: Plan | None = None) -> bool:
        """Whether the sweep may run a trial: a search, or a trial without a result file
        (before the plan: no result files at all)."""
        if self._spec.search is not None:
            return True
        if plan is None:
            return not (self._storage / "results").exists()
        return any(not result_path(self._storage, t.trial_key).exists() for t in plan.trials)

    def early(self, plan: Plan | None = None) -> None:
        """Start Ray in the background now if the sweep may run a trial."""
        if self._session is None and self.may_run(plan):
            self.session()

    def session(self) -> Any:
        """The ray_backend.BackgroundSession, started on the first call."""
        if self._session is None:
            from sweeps import ray_backend

            self._session = ray_backend.BackgroundSession(
                address=self._address, num_cpus=self._spec.num_cpus, verbose=self._verbose
            )
        return self._session

    def close(self) -> None:
        """Shut Ray down (a no-op when it never started or is closed)."""
        if self._session is not None:
            self._session.close()
            self._session = None


def _run_locked(
    spec: Spec,
    plan: Plan,
    fn: Trainable,
    storage: Path,
    address: str | None,
    verbose: bool,
    stream: TextIO | None,
    dataset: Any,
    started: float,
    invocation: str,
    ray: RayStart,
    reuse_stale: bool = False,
) -> tuple[RunSummary, Plan]:
    spec_hash = spec.spec_hash()
    for digest, h in plan.hierarchies.items():
        if not plan.hierarchy_paths[digest].exists():
            h.save(plan.hierarchy_paths[digest])
    ray.early(plan)  # comes up while the driver sets up MLflow
    tracker = connect(spec)  # an unreachable server: the sweep runs offline, syncs later
    executor = Executor(
        spec=spec,
        tracker=tracker,
        trainable=fn,
        storage=storage,
        verbose=verbose,
        stream=stream,
        invocation=invocation,
        address=address,
        ray=ray,
    )
    status = "FAILED"
    try:
        with executor:
            offline = not tracker.online
            if not offline:
                tracker.log_hierarchies(plan.hierarchy_paths[d] for d in plan.hierarchies)
                if spec.analysis.config():  # how `granularity analyze` reads crossed options
                    tracker.tag_parent({ANALYSIS_CONFIG: canonical_json(spec.analysis.config())})
            wait_for_workers(storage, stream=stream)  # a killed driver's last results land first
            synced = 0 if offline else replay_journal(tracker, storage, spec_hash)
            executor.rerun = _stale(plan, storage, stream, reuse=reuse_stale)
            tuned: dict[Any, Any] = {}
            if spec.search is not None:
                from sweeps.search import run_search

                tuned = run_search(spec, plan, tracker, executor, storage)
                plan = build_plan(spec, dataset=dataset, tuned=tuned, write=True, storage=storage)
                tracker.log_hierarchies(plan.hierarchy_paths[d] for d in plan.hierarchies)
            design = spec.design()
            if design is None:
                metas = {t.trial_key: t.meta() for t in plan.trials}
                ledgers = [executor(plan.trials, metas, spec.name, spec.pack)]
                rounds = None
            else:
                if not offline:  # an offline run's parent is made later, by reconnect or sync
                    tracker.tag_parent({REPLICATES: canonical_json(asdict(design))})
                tags = round_tags(plan, design)
                metas = {t.trial_key: t.meta(extra_tags=tags[t.trial_key]) for t in plan.trials}
                rounds = run_rounds(plan, design, executor, metas, storage, spec.name, spec.pack)
                ledgers = rounds.ledgers
        pending = len(executor.pending)
        if not tracker.online:  # down at start: the server may be back now
            back = reconnect(spec, storage, [plan.hierarchy_paths[d] for d in plan.hierarchies])
            if back is not None:
                tracker, synced_now = back
                synced += synced_now
                pending = 0
        summary = summarise(
            plan,
            ledgers,
            rounds=rounds,
            synced=synced,
            tuned=tuned,
            slots=executor.slots,
            pending_sync=pending,
            wall_s=time.monotonic() - started,
        )
        status = "FINISHED" if summary.ok else "FAILED"
        return summary, plan
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            if tracker.online:
                tracker.end_parent(status)
        except Exception as err:  # noqa: BLE001 (the trials' results are safe on disk)
            print(
                f"warning: could not mark the sweep's MLflow run {status}: {err}", file=sys.stderr
            )
