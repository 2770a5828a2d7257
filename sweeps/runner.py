"""The orchestrator: spec -> plan -> skip what is done -> packs on Ray -> MLflow.

`run_sweep` is `granularity run`. Order of business, each step safe to kill:

1. validate the spec and expand the plan (an invalid spec stops here, before
   MLflow is touched);
2. take the sweep's driver lock (`<storage>/driver.lock`; one driver per sweep);
3. create the MLflow store, experiment and parent run (before any trial runs:
   the driver is the single writer);
4. sync every result file under `<storage>/results/` that MLflow lacks (what a
   killed driver left behind);
5. optionally tune continuous settings with Optuna (`sweeps.search`);
6. run the trials whose MLflow run is not FINISHED, packed, on Ray, logging
   each event as it arrives.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sweeps.packs import make_packs, read_json, read_results, result_path, write_json_atomic
from sweeps.plan import Plan, Trial, build_plan
from sweeps.spec import Spec
from sweeps.tracking import HIERARCHY_HASH, LABEL_FN, PRETRAIN_KEY, RunState, Tracker

Trainable = Callable[[dict, Callable[[dict, int], None] | None], dict]


class SweepError(ValueError):
    """A problem running a sweep that the user can fix (another driver holds the sweep, say)."""


def resolve_trainable(spec: Spec, trainable: Trainable | None = None) -> Trainable:
    """The callable that runs one trial: `trainable` if given, else the spec's `module:function`."""
    if trainable is not None:
        return trainable
    module_name, _, attr = spec.trainable.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise LookupError(f"trainable {spec.trainable!r} cannot be imported: {err}") from err


def trial_meta(trial: Trial, role: str = "trial", extra_tags: dict[str, str] | None = None) -> dict:
    """What the driver needs to log a trial's run, carried with it (and into its result file)."""
    c = trial.config
    tags = {PRETRAIN_KEY: trial.pretrain_key, LABEL_FN: trial.label_fn, **(extra_tags or {})}
    if trial.hierarchy_hash:
        tags[HIERARCHY_HASH] = trial.hierarchy_hash
    name = (
        f"{c['hierarchy']}/{c['level_name'] or 'scratch'}/f{c['data_fraction']:g}/"
        f"{c['backbone']}/s{c['seed']}"
    )
    return {"role": role, "run_name": name, "params": trial.params(), "tags": tags}


# ---- progress ---------------------------------------------------------------------
class Progress:
    """One compact line on stderr: done, running, failed, remaining, ETA."""

    def __init__(self, total: int, *, stream: TextIO | None = None, label: str = "") -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.done = self.failed = self.running = 0
        self.started = time.monotonic()
        self.last_print = 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        remaining = self.total - self.done - self.failed
        elapsed = time.monotonic() - self.started
        eta = "?"
        finished = self.done + self.failed
        if finished and remaining:
            eta = _duration(elapsed / finished * remaining)
        elif not remaining:
            eta = "0s"
        return (
            f"[{self.label}] {self.done}/{self.total} done, {self.running} running, "
            f"{self.failed} failed, {remaining} remaining, ETA {eta} ({_duration(elapsed)} elapsed)"
        )

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_print < (1.0 if self.tty else 15.0):
            return
        self.last_print = now
        end = "\r" if self.tty and not force else "\n"
        print(self.line().ljust(100 if self.tty else 0), end=end, file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ---- the event handler ------------------------------------------------------------
@dataclass
class Recorder:
    """Turns workers' events into MLflow writes and result files (driver side)."""

    tracker: Tracker
    storage: Path
    spec_hash: str
    items: dict[str, dict[str, Any]]  # trial_key -> {"config", "meta"}
    runs: dict[str, RunState]
    progress: Progress | None = None
    open_runs: dict[str, str] = field(default_factory=dict)
    history: dict[str, list] = field(default_factory=dict)
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    scheduled: int = 0  # trials handed to Ray
    reused: int = 0  # results known before this run (not counted as finished now)
    finished_now: list[str] = field(default_factory=list)
    packs: int = 0

    def _run_id(self, key: str) -> str:
        if key not in self.open_runs:
            meta = self.items[key]["meta"]
            self.open_runs[key] = self.tracker.open_trial(
                self.runs.get(key),
                key=key,
                run_name=meta["run_name"],
                tags={"granularity.role": meta["role"], **meta["tags"]},
                params=meta["params"],
                spec_hash=self.spec_hash,
            )
        return self.open_runs[key]

    def on_events(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            key = event["trial_key"]
            if key not in self.items:
                continue  # not ours (a stale worker of an older plan)
            kind = event["event"]
            if kind == "start":
                self._run_id(key)
                self.attempts[key] = event.get("attempt", 1)
                if event.get("attempt", 1) == 1 and self.progress:
                    self.progress.running += 1
            elif kind == "epochs":
                self.history.setdefault(key, []).extend(event["epochs"])
                self.tracker.log_epochs(self._run_id(key), event["epochs"])
            elif kind == "final":
                if "history" in event:  # a replay: log the epochs this driver has not seen
                    unseen = event["history"][len(self.history.get(key, [])) :]
                    if unseen and key not in self.results:
                        self.history.setdefault(key, []).extend(unseen)
                        self.tracker.log_epochs(self._run_id(key), unseen)
                self._finish(key, event["result"], event.get("attempts", 1), event.get("wall_s"))
            elif kind == "failed":
                self._fail(key, event["reason"], event.get("attempts", 1))
        if self.progress:
            self.progress.show()

    def _finish(
        self, key: str, result: dict[str, float], attempts: int, wall_s: float | None
    ) -> None:
        if key in self.results:
            return
        item = self.items[key]
        path = result_path(self.storage, key)
        if not path.exists():  # the worker's copy is missing (storage not shared): keep ours
            write_json_atomic(
                path,
                {
                    "trial_key": key,
                    "config": item["config"],
                    "meta": item["meta"],
                    "result": result,
                    "history": self.history.get(key, []),
                    "attempts": attempts,
                    "wall_s": wall_s,
                    "finished_at": time.time(),
                },
            )
        self.tracker.finish_trial(
            self._run_id(key), result=result, config=item["config"], attempts=attempts
        )
        self.results[key] = result
        self.finished_now.append(key)
        if wall_s is not None:
            self.wall_s[key] = wall_s
        if self.progress:
            self.progress.done += 1
            self.progress.running = max(0, self.progress.running - 1)

    def _fail(self, key: str, reason: str, attempts: int) -> None:
        if key in self.results or key in self.failures:
            return
        self.tracker.fail_trial(self._run_id(key), reason=reason, attempts=attempts)
        self.failures[key] = reason
        if self.progress:
            self.progress.failed += 1
            self.progress.running = max(0, self.progress.running - 1)

    def on_pack_error(self, keys: Sequence[str], message: str) -> None:
        """A whole pack died (after Ray's retries): its unfinished trials failed with it."""
        for key in keys:
            if key not in self.results and key not in self.failures:
                self._fail(key, f"Ray trial failed: {message}", self.attempts.get(key, 1))

    def tick(self, running_packs: int) -> None:
        if self.progress:
            self.progress.show()


# ---- result files -> MLflow ---------------------------------------------------------
def sync_results(tracker: Tracker, storage: Path, spec_hash: str) -> int:
    """Log every result file whose trial has no FINISHED run; returns how many were synced."""
    runs = tracker.trial_runs()
    synced = 0
    for key, record in read_results(storage).items():
        state = runs.get(key)
        if state is not None and state.status == "FINISHED":
            continue
        meta = record.get("meta") or {}
        if not meta:
            continue
        recorder = Recorder(
            tracker, storage, spec_hash, {key: {"config": record["config"], "meta": meta}}, runs
        )
        run_id = recorder._run_id(key)
        if record.get("history"):
            tracker.log_epochs(run_id, record["history"])
        tracker.finish_trial(
            run_id,
            result=record["result"],
            config=record["config"],
            attempts=record.get("attempts", 1),
        )
        synced += 1
    return synced


# ---- the sweep ------------------------------------------------------------------
@dataclass
class RunSummary:
    """What one `granularity run` did."""

    planned: int
    skipped: int
    ran: int
    finished: int
    failed: dict[str, str]
    synced: int
    pretrainings_planned: int
    pretrainings_executed: int
    packs: int
    wall_s: float
    trial_wall_s: float
    slots: int
    tuned: dict[str, Any] = field(default_factory=dict)
    not_run: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_run

    def text(self, plan: Plan | None = None) -> str:
        lines = [
            f"{self.planned} trials planned: {self.skipped} already done, {self.ran} run now "
            f"({self.finished} finished, {len(self.failed)} failed"
            + (f", {self.not_run} not run" if self.not_run else "")
            + f") in {_duration(self.wall_s)}; {self.synced} result(s) synced from storage",
            f"pretrainings: {self.pretrainings_executed} executed "
            f"({self.pretrainings_planned} distinct in the plan); {self.packs} Ray trial(s)",
        ]
        if self.failed:
            by_key = plan.by_key() if plan else {}
            lines.append("failed trials:")
            for key, reason in list(self.failed.items())[:20]:
                trial = by_key.get(key)
                where = trial_meta(trial)["run_name"] if trial else key[:12]
                lines.append(f"  {where}: {reason}")
            if len(self.failed) > 20:
                lines.append(f"  ... and {len(self.failed) - 20} more (granularity status)")
        return "\n".join(lines)


def run_sweep(
    spec: Spec,
    *,
    trainable: Trainable | None = None,
    address: str | None = None,
    verbose: bool = False,
    stream: TextIO | None = None,
    dataset: Any | None = None,
) -> tuple[RunSummary, Plan]:
    """Run (or resume, or extend) a sweep; returns its summary and plan.

    `trainable(config, report) -> dict` defaults to the spec's (`trainables:train`).
    """
    from filelock import FileLock, Timeout

    started = time.monotonic()
    fn = resolve_trainable(spec, trainable)
    storage = spec.resolved_storage_path()
    plan = build_plan(spec, dataset=dataset, write=False, storage=storage)  # validates first
    storage.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(storage / "driver.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SweepError(
            f"another `granularity run` is driving this sweep (lock {storage / 'driver.lock'})"
        ) from None
    try:
        return _run_locked(spec, plan, fn, storage, address, verbose, stream, dataset, started)
    finally:
        lock.release()


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
) -> tuple[RunSummary, Plan]:
    spec_hash = spec.spec_hash()
    for digest, h in plan.hierarchies.items():
        if not plan.hierarchy_paths[digest].exists():
            h.save(plan.hierarchy_paths[digest])
    tracker = Tracker(spec)  # creates the store and experiment before any trial starts
    tracker.start_parent(spec, json.dumps(spec.model_dump(mode="json"), indent=2))
    tracker.log_hierarchies(plan.hierarchy_paths[d] for d in plan.hierarchies)
    synced = sync_results(tracker, storage, spec_hash)
    executor = _Executor(
        spec=spec,
        tracker=tracker,
        trainable=fn,
        storage=storage,
        verbose=verbose,
        stream=stream,
        invocation=uuid.uuid4().hex[:12],
        address=address,
    )
    status = "FAILED"
    try:
        with executor:
            tuned: dict[Any, Any] = {}
            if spec.search is not None:
                from sweeps.search import run_search

                tuned = run_search(spec, plan, tracker, executor, storage)
                plan = build_plan(spec, dataset=dataset, tuned=tuned, write=True, storage=storage)
                tracker.log_hierarchies(plan.hierarchy_paths[d] for d in plan.hierarchies)
            metas = {t.trial_key: trial_meta(t) for t in plan.trials}
            recorder = executor(plan.trials, metas, spec.name, spec.pack)
        executed = sum(
            1
            for key in recorder.finished_now
            if recorder.results[key].get("pretrain_reused", 0.0) < 0.5
            and metas[key]["params"]["hierarchy"] != "scratch"
        )
        finished = len(recorder.finished_now)
        summary = RunSummary(
            planned=len(plan.trials),
            skipped=len(plan.trials) - recorder.scheduled,
            ran=recorder.scheduled,
            finished=finished,
            failed=dict(recorder.failures),
            synced=synced,
            pretrainings_planned=plan.num_pretrainings(),
            pretrainings_executed=executed,
            packs=recorder.packs,
            wall_s=time.monotonic() - started,
            trial_wall_s=sum(recorder.wall_s.values()),
            slots=executor.slots,
            tuned={k if isinstance(k, str) else "/".join(map(str, k)): v for k, v in tuned.items()},
            not_run=recorder.scheduled - finished - len(recorder.failures),
        )
        status = "FINISHED" if summary.ok else "FAILED"
        return summary, plan
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end_parent(status)


@dataclass
class _Executor:
    """Runs a list of trials on Ray (inside a ray_session), skipping those already done."""

    spec: Spec
    tracker: Tracker
    trainable: Trainable
    storage: Path
    verbose: bool
    stream: TextIO | None
    invocation: str
    address: str | None = None
    _ray: Any = None  # the open ray_session, started on first need
    _resources: dict[str, float] | None = None

    @property
    def slots(self) -> int:
        """Ray trials at once: max_concurrent, else what the cluster's CPUs/GPUs allow."""
        if self.spec.max_concurrent or self._resources is None:
            return self.spec.slots()
        per = self.spec.resources
        slots = int(self._resources.get("CPU", 1) // per.cpu)
        if per.gpu:
            slots = min(slots, int(self._resources.get("GPU", 0) // per.gpu))
        return max(1, slots)

    def __enter__(self) -> _Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ray is not None:
            self._ray.__exit__(*exc)
            self._ray = None

    def _ensure_ray(self) -> None:
        from sweeps import ray_backend

        if self._ray is None:
            session = ray_backend.ray_session(
                address=self.address, num_cpus=self.spec.num_cpus, verbose=self.verbose
            )
            info = session.__enter__()
            self._ray = session
            self._resources = info["resources"]
            gpus = self._resources.get("GPU", 0.0)
            if self.spec.resources.gpu > gpus and not (
                self.address or os.environ.get("RAY_ADDRESS")
            ):
                self.__exit__(None, None, None)
                raise SweepError(
                    f"resources.gpu={self.spec.resources.gpu:g} per trial, but this machine's Ray "
                    f"has {gpus:g} GPU(s); use resources.gpu=0 device=cpu (or --smoke), or a "
                    "cluster (--address)"
                )

    def __call__(
        self, trials: Sequence[Trial], metas: dict[str, dict], label: str, pack: str | int
    ) -> Recorder:
        """Run `trials` not FINISHED yet; the returned Recorder holds results old and new."""
        from sweeps import ray_backend

        runs = self.tracker.trial_runs()
        stored = read_results(self.storage)
        items = {t.trial_key: {"config": t.config, "meta": metas[t.trial_key]} for t in trials}
        todo = [
            t
            for t in trials
            if not (t.trial_key in runs and runs[t.trial_key].status == "FINISHED")
        ]
        progress = None if self.verbose else Progress(len(todo), stream=self.stream, label=label)
        recorder = Recorder(
            self.tracker, self.storage, self.spec.spec_hash(), items, runs, progress
        )
        for t in trials:  # results of trials done before, for the search's bookkeeping
            if t not in todo and t.trial_key in stored:
                recorder.results[t.trial_key] = stored[t.trial_key]["result"]
                recorder.reused += 1
        recorder.scheduled = len(todo)
        if not todo:
            return recorder
        self._ensure_ray()
        packs = make_packs(todo, slots=self.slots, pack=pack)
        recorder.packs = len(packs)
        try:
            self._run(ray_backend, packs, items, recorder, label)
        finally:
            # Runs left open (Ctrl-C, a crash of the driver's loop) say so; their
            # trials rerun next time (or sync, if a worker finished them meanwhile).
            for key, run_id in recorder.open_runs.items():
                if key not in recorder.results and key not in recorder.failures:
                    self.tracker.set_status(run_id, "KILLED")
        if progress:
            progress.show(force=True)
        return recorder

    def _run(
        self,
        ray_backend: Any,
        packs: list[list[Trial]],
        items: dict[str, dict],
        recorder: Recorder,
        label: str,
    ) -> None:
        ray_backend.run_packs(
            [[items[t.trial_key] for t in p] for p in packs],
            trainable=self.trainable,
            storage=self.storage,
            name=f"{label}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            resources={"cpu": self.spec.resources.cpu, "gpu": self.spec.resources.gpu},
            max_concurrent=self.slots,
            retries=self.spec.retries,
            invocation=self.invocation,
            on_events=recorder.on_events,
            on_pack_error=lambda i, msg: recorder.on_pack_error(
                [t.trial_key for t in packs[i]], msg
            ),
            on_tick=recorder.tick,
            verbose=self.verbose,
        )


# ---- status ---------------------------------------------------------------------
FACTORS = ("hierarchy", "level_name", "data_fraction", "backbone", "seed")


def trial_states(spec: Spec, plan: Plan) -> dict[str, tuple[str, str | None]]:
    """trial_key -> (done | running | failed | missing, failure reason) for the plan's trials.

    Reads MLflow without creating anything (no store, no experiment) plus the
    result files a killed driver may have left unsynced (those count as done).
    """
    tracker = open_tracker_readonly(spec)
    runs = tracker.trial_runs() if tracker else {}
    stored = read_results(plan.storage)
    driver_alive = _driver_running(plan.storage)
    out: dict[str, tuple[str, str | None]] = {}
    for trial in plan.trials:
        key = trial.trial_key
        state = runs.get(key)
        if (state and state.status == "FINISHED") or key in stored:
            out[key] = ("done", None)
        elif state and state.status == "FAILED":
            out[key] = ("failed", state.failure)
        elif state and state.status == "KILLED":
            out[key] = ("missing", None)  # interrupted: reruns next time
        elif state and state.status == "RUNNING":
            out[key] = (
                ("running", None) if driver_alive else ("failed", "interrupted (driver stopped)")
            )
        else:
            failed = read_json(plan.storage / "results" / f"{key}.failed.json")
            out[key] = ("failed", failed["reason"]) if failed else ("missing", None)
    return out


def open_tracker_readonly(spec: Spec) -> Tracker | None:
    """A Tracker for reading, or None when the store or experiment does not exist yet."""
    uri = spec.tracking.uri
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if not db.is_absolute():
            db = Path.cwd() / db
        if not db.exists():
            return None
    tracker = Tracker(spec, create=False)
    return tracker if tracker.experiment_id is not None else None


def _driver_running(storage: Path) -> bool:
    from filelock import FileLock, Timeout

    path = storage / "driver.lock"
    if not path.exists():
        return False
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
