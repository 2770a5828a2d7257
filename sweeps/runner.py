"""The orchestrator: spec -> plan -> skip what is done -> packs on Ray -> MLflow.

`run_sweep` is `granularity run`. Order of business, each step safe to kill:

1. validate the spec and expand the plan (an invalid spec stops here, before
   MLflow is touched);
2. take the sweep's driver lock (`<storage>/driver.lock`; one driver per sweep);
3. create the MLflow store, experiment and parent run (before any trial runs:
   the driver is the single writer);
4. sync every result file under `<storage>/results/` that MLflow lacks (what a
   killed driver, or a tracking outage, left behind; `granularity sync` does
   this step alone);
5. optionally tune continuous settings with Optuna (`sweeps.search`);
6. run the trials whose MLflow run is not FINISHED, packed, on Ray, logging
   each event as it arrives.

MLflow writes during the sweep never stop it: a write that fails (the
tracking server unreachable) is skipped for that trial, which is then
"pending sync"; its result (or failure) is on disk under `<storage>/results/`
and is written to MLflow at the end of the run if the server is back, else
by the next `run` or `granularity sync` (never twice: see sweeps/tracking.py).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sweeps.packs import (
    add_epoch,
    failure_path,
    make_packs,
    read_failures,
    read_json,
    read_results,
    result_path,
    write_json_atomic,
)
from sweeps.plan import Plan, Trial, build_plan
from sweeps.spec import Spec, SpecError
from sweeps.tracking import (
    HIERARCHY_HASH,
    LABEL_FN,
    PRETRAIN_KEY,
    RunState,
    Tracker,
    WriteQueue,
    sqlite_path,
)

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
        raise SpecError([f"trainable: {spec.trainable!r} cannot be imported: {err}"]) from None


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


# ---- Ctrl-C ---------------------------------------------------------------------
_INTERRUPTED = threading.Event()


def _raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt in the driver's loop after a Ctrl-C.

    The first KeyboardInterrupt can land inside Ray or MLflow code that
    swallows it (a callback from C++, say); the driver's own handlers raise it
    again at the next event or Tune step, so an interrupted sweep always stops
    and marks its open runs KILLED.
    """
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _INTERRUPTED.clear()


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
    pending: set[str] = field(default_factory=set)  # trials whose MLflow writes failed
    logged: dict[str, set[tuple[str, int]]] = field(
        default_factory=dict
    )  # (metric, step) in MLflow
    tracking_errors: int = 0
    retry_tracking_at: float = 0.0  # while offline, MLflow is not tried before this
    stream: TextIO | None = None
    writer: WriteQueue | None = None  # set while Ray runs: the Tune loop never waits on MLflow

    # While the tracking server is unreachable, each trial's writes are skipped
    # (not retried event by event, which would stall the Tune loop in HTTP
    # retries); the server is tried again after this many seconds.
    OFFLINE_RETRY_S = 10.0

    def _track(self, key: str, write: Callable[..., Any], *args: Any) -> None:
        """Do one MLflow write for trial `key`: on the writer thread while Ray runs, else now."""
        if self.writer is not None:
            self.writer.submit(lambda: self._write(key, write, *args))
        else:
            self._write(key, write, *args)

    def _write(self, key: str, write: Callable[..., Any], *args: Any) -> None:
        """One MLflow write; on failure mark the trial pending and go on."""
        if key in self.pending or time.monotonic() < self.retry_tracking_at:
            self.pending.add(key)
            return
        try:
            write(*args)
        except Exception as err:  # noqa: BLE001 (any tracking failure: the sweep goes on)
            self.pending.add(key)
            self.tracking_errors += 1
            self.retry_tracking_at = time.monotonic() + self.OFFLINE_RETRY_S
            if self.tracking_errors == 1:
                text = str(err).strip().splitlines()
                print(
                    f"warning: MLflow write failed ({type(err).__name__}: "
                    f"{text[0][:200] if text else ''}); trials go on, results stay in "
                    f"{self.storage / 'results'} and are synced when the server is back",
                    file=self.stream if self.stream is not None else sys.stderr,
                    flush=True,
                )

    def _keep_epochs(self, key: str, epochs: Sequence[Sequence[Any]]) -> None:
        history = self.history.setdefault(key, [])
        for step, values in epochs:
            add_epoch(history, [int(step), dict(values)])

    def _open(self, key: str) -> tuple[str, dict[str, str]]:
        """The trial's run id, and the params still to log (a new run's go with its first batch)."""
        if key in self.open_runs:
            return self.open_runs[key], {}
        meta = self.items[key]["meta"]
        existing = self.runs.get(key)
        if existing is not None:  # a resumed run: what an earlier driver logged stays once
            self.logged[key] = self.tracker.logged_points(existing.run_id)
        self.open_runs[key] = self.tracker.open_trial(
            existing,
            key=key,
            run_name=meta["run_name"],
            tags={"granularity.role": meta["role"], **meta["tags"]},
            params=meta["params"] if existing is not None else {},
            spec_hash=self.spec_hash,
        )
        return self.open_runs[key], ({} if existing is not None else dict(meta["params"]))

    def _log_batch(self, key: str, batch: dict[str, Any]) -> None:
        """One trial's events of one report in as few MLflow calls as possible.

        `batch`: `{"epochs": [[step, metrics], ...]}`, plus `"final": {"result",
        "attempts"}` or `"failed": {"reason", "attempts"}`. Each (metric, step)
        is logged once per run (a resumed run's earlier points are read first).
        """
        run_id, params = self._open(key)
        seen = self.logged.setdefault(key, set())
        epochs = []
        for step, values in batch["epochs"]:
            new = {n: v for n, v in values.items() if (n, int(step)) not in seen}
            if new:
                epochs.append([int(step), new])
        if "final" in batch:
            self.tracker.finish_trial(
                run_id,
                result=batch["final"]["result"],
                config=self.items[key]["config"],
                attempts=batch["final"]["attempts"],
                params=params,
                epochs=epochs,
                skip_logged=key in self.runs,  # an earlier driver may have logged some of it
            )
        elif "failed" in batch:
            self.tracker.fail_trial(
                run_id,
                reason=batch["failed"]["reason"],
                attempts=batch["failed"]["attempts"],
                params=params,
                epochs=epochs,
            )
        elif params or epochs:
            self.tracker.log_epochs(run_id, epochs, params=params)
        seen.update((n, step) for step, values in epochs for n in values)

    def on_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Book a report's events at once; queue their MLflow writes, one batch per trial."""
        _raise_if_interrupted()
        batches: dict[str, dict[str, Any]] = {}
        for event in events:
            key = event["trial_key"]
            if key not in self.items:
                continue  # not ours (a stale worker of an older plan)
            kind = event["event"]
            batch = batches.setdefault(key, {"epochs": []})
            if kind == "start":
                self.attempts[key] = event.get("attempt", 1)
                if event.get("attempt", 1) == 1 and self.progress:
                    self.progress.running += 1
            elif kind == "epochs":
                self._keep_epochs(key, event["epochs"])
                batch["epochs"].extend(event["epochs"])
            elif kind == "final":
                if "history" in event and key not in self.results:
                    # A replay or a resumed trial: the epochs this driver has not seen.
                    self._keep_epochs(key, event["history"])
                    batch["epochs"].extend(event["history"])
                attempts = event.get("attempts", 1)
                if self._finish(key, event["result"], attempts, event.get("wall_s")):
                    batch["final"] = {"result": event["result"], "attempts": attempts}
            elif kind == "failed":
                attempts = event.get("attempts", 1)
                if self._fail(key, event["reason"], attempts):
                    batch["failed"] = {"reason": event["reason"], "attempts": attempts}
        for key, batch in batches.items():
            self._track(key, self._log_batch, key, batch)
        if self.progress:
            self.progress.show()

    def _finish(
        self, key: str, result: dict[str, float], attempts: int, wall_s: float | None
    ) -> bool:
        """Book a finished trial (False if it was booked before)."""
        if key in self.results:
            return False
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
        self.results[key] = result
        self.finished_now.append(key)
        if wall_s is not None:
            self.wall_s[key] = wall_s
        if self.progress:
            self.progress.done += 1
            self.progress.running = max(0, self.progress.running - 1)
        return True

    def _fail(self, key: str, reason: str, attempts: int) -> bool:
        """Book a failed trial (False if it was booked, finished or failed, before)."""
        if key in self.results or key in self.failures:
            return False
        path = failure_path(self.storage, key)
        record = read_json(path)
        if not record or "meta" not in record:  # a pack that died (no worker record)
            write_json_atomic(
                path,
                {
                    "trial_key": key,
                    "reason": reason,
                    "attempts": attempts,
                    "config": self.items[key]["config"],
                    "meta": self.items[key]["meta"],
                    **(record or {}),
                },
            )
        self.failures[key] = reason
        if self.progress:
            self.progress.failed += 1
            self.progress.running = max(0, self.progress.running - 1)
        return True

    def on_pack_error(self, keys: Sequence[str], message: str) -> None:
        """A whole pack died (after Ray's retries): its unfinished trials failed with it."""
        for key in keys:
            reason = f"Ray trial failed: {message}"
            attempts = self.attempts.get(key, 1)
            if self._fail(key, reason, attempts):
                failed = {"reason": reason, "attempts": attempts}
                self._track(key, self._log_batch, key, {"epochs": [], "failed": failed})

    def tick(self, running_packs: int) -> None:
        _raise_if_interrupted()
        if self.progress:
            self.progress.show()


# ---- result files -> MLflow ---------------------------------------------------------
def sync_results(tracker: Tracker, storage: Path, spec_hash: str, *, failures: bool = True) -> int:
    """Log what `<storage>/results/` holds and MLflow lacks; returns how many trials were synced.

    A result file whose trial has no FINISHED run finishes that run (or a new
    child run); a failure record (`<key>.failed.json`) of a trial with no
    result marks its run FAILED unless MLflow already has it FINISHED or
    FAILED. Only what the run lacks is logged, so syncing twice (or after a
    partial write) duplicates nothing.
    """
    runs = tracker.trial_runs()
    results = read_results(storage)
    recorder = Recorder(tracker, storage, spec_hash, {}, runs)
    synced = 0
    for key, record in results.items():
        state = runs.get(key)
        if state is not None and state.status == "FINISHED":
            continue
        meta = record.get("meta") or {}
        if not meta:
            continue
        recorder.items[key] = {"config": record["config"], "meta": meta}
        final = {"result": record["result"], "attempts": record.get("attempts", 1)}
        recorder._log_batch(key, {"epochs": record.get("history") or [], "final": final})
        synced += 1
    if not failures:
        return synced
    for key, record in read_failures(storage).items():
        state = runs.get(key)
        if key in results or (state is not None and state.status in ("FINISHED", "FAILED")):
            continue
        meta = record.get("meta") or {}
        if not meta or "config" not in record:
            continue
        recorder.items[key] = {"config": record["config"], "meta": meta}
        failed = {"reason": record["reason"], "attempts": record.get("attempts", 1)}
        recorder._log_batch(key, {"epochs": [], "failed": failed})
        synced += 1
    return synced


@contextlib.contextmanager
def _driver_lock(storage: Path, busy: str) -> Iterator[None]:
    """Hold `<storage>/driver.lock` (one driver per sweep); SweepError(busy) when it is taken."""
    from filelock import FileLock, Timeout

    path = storage / "driver.lock"
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SweepError(f"{busy} (lock {path})") from None
    try:
        yield
    finally:
        lock.release()


def sync_storage(spec: Spec) -> tuple[int, int]:
    """`granularity sync`: (trials written to MLflow, records in storage) for `spec`'s sweep.

    Takes the sweep's driver lock (a running driver syncs by itself), finds or
    creates the sweep's parent run, then `sync_results`.
    """
    storage = spec.resolved_storage_path()
    if not (storage / "results").is_dir():
        raise SweepError(f"nothing to sync: {storage / 'results'} does not exist")
    with _driver_lock(storage, "a `granularity run` is driving this sweep; it syncs by itself"):
        tracker = Tracker(spec)
        parent = tracker.parent_run_id()
        if parent is None:
            tracker.start_parent(spec, json.dumps(spec.model_dump(mode="json"), indent=2))
            tracker.end_parent("FINISHED")
        else:
            tracker.parent_id = parent
        finished = set(read_results(storage))
        total = len(finished | set(read_failures(storage)))
        return sync_results(tracker, storage, spec.spec_hash()), total


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
    pending_sync: int = 0  # trials whose MLflow writes failed and are still not synced

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
        if self.pending_sync:
            lines.append(
                f"MLflow was unreachable: {self.pending_sync} trial result(s) pending sync, kept "
                "in the sweep's storage (results/); run `granularity sync SPEC` (or `run` "
                "again) once the tracking server is back"
            )
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
    started = time.monotonic()
    fn = resolve_trainable(spec, trainable)
    storage = spec.resolved_storage_path()
    plan = build_plan(spec, dataset=dataset, write=False, storage=storage)  # validates first
    storage.mkdir(parents=True, exist_ok=True)
    with _driver_lock(storage, "another `granularity run` is driving this sweep"), _interruptible():
        return _run_locked(spec, plan, fn, storage, address, verbose, stream, dataset, started)


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
    ray = None
    if spec.search is not None or any(
        not result_path(storage, t.trial_key).exists() for t in plan.trials
    ):
        ray = _start_ray(spec, address, verbose)  # comes up while the driver sets up MLflow
    try:
        tracker = Tracker(spec)  # creates the store and experiment before any trial starts
        tracker.start_parent(spec, json.dumps(spec.model_dump(mode="json"), indent=2))
    except BaseException:
        if ray is not None:
            ray.close()
        raise
    executor = _Executor(
        spec=spec,
        tracker=tracker,
        trainable=fn,
        storage=storage,
        verbose=verbose,
        stream=stream,
        invocation=uuid.uuid4().hex[:12],
        address=address,
        ray=ray,
    )
    status = "FAILED"
    try:
        with executor:
            tracker.log_hierarchies(plan.hierarchy_paths[d] for d in plan.hierarchies)
            synced = sync_results(tracker, storage, spec_hash)
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
            pending_sync=len(executor.pending),
        )
        status = "FINISHED" if summary.ok else "FAILED"
        return summary, plan
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            tracker.end_parent(status)
        except Exception as err:  # noqa: BLE001 (the trials' results are safe on disk)
            print(
                f"warning: could not mark the sweep's MLflow run {status}: {err}", file=sys.stderr
            )


def _start_ray(spec: Spec, address: str | None, verbose: bool) -> Any:
    """Start (or join) Ray in the background: a ray_backend.BackgroundSession."""
    from sweeps import ray_backend

    return ray_backend.BackgroundSession(address=address, num_cpus=spec.num_cpus, verbose=verbose)


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
    ray: Any = None  # a ray_backend.BackgroundSession (started early, or on first need)
    _resources: dict[str, float] | None = None
    recorders: list[Recorder] = field(default_factory=list)

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
        if self.ray is not None:
            self.ray.close()
            self.ray = None

    def _ensure_ray(self) -> None:
        if self._resources is not None:
            return
        if self.ray is None:
            self.ray = _start_ray(self.spec, self.address, self.verbose)
        try:
            self._resources = self.ray.wait()["resources"]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        gpus = self._resources.get("GPU", 0.0)
        if self.spec.resources.gpu > gpus and not (self.address or os.environ.get("RAY_ADDRESS")):
            self.__exit__(None, None, None)
            self._resources = None
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
            self.tracker,
            self.storage,
            self.spec.spec_hash(),
            items,
            runs,
            progress,
            stream=self.stream,
        )
        self.recorders.append(recorder)
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
        recorder.writer = WriteQueue()
        try:
            self._run(ray_backend, packs, items, recorder, label)
        finally:
            recorder.writer.close()  # every write queued so far is done
            recorder.writer = None
            self._mark_killed(recorder, [t.trial_key for t in todo])
        if recorder.pending:
            self.sync_pending(recorder)
        if progress:
            progress.show(force=True)
        return recorder

    def _mark_killed(self, recorder: Recorder, keys: Sequence[str]) -> None:
        """Runs left open (Ctrl-C, a crash of the driver's loop) say so: KILLED.

        Their trials rerun next time (or sync, if a worker finished them
        meanwhile). MLflow is asked too: an interrupt can land after a run was
        created and before the driver noted its id.
        """
        open_keys = [
            k
            for k in keys
            if k not in recorder.results
            and k not in recorder.failures
            and k not in recorder.pending
        ]
        if not open_keys:
            return
        try:
            states = self.tracker.trial_runs()
        except Exception:  # noqa: BLE001 (unreachable: the next run finds them RUNNING)
            states = {}
        for key in open_keys:
            state = states.get(key)
            run_id = recorder.open_runs.get(key)
            if run_id is None and state is not None and state.status == "RUNNING":
                run_id = state.run_id
            if run_id is not None and (state is None or state.status == "RUNNING"):
                recorder._track(key, self.tracker.set_status, run_id, "KILLED")

    def sync_pending(self, recorder: Recorder) -> None:
        """After an outage: write what MLflow missed, if the server is back (else leave it)."""
        try:
            sync_results(self.tracker, self.storage, self.spec.spec_hash())
            runs = self.tracker.trial_runs()
        except Exception:  # noqa: BLE001 (still unreachable: stays pending)
            return
        for key in list(recorder.pending):
            state = runs.get(key)
            status = state.status if state else None
            if status == "FINISHED" or (status == "FAILED" and key in recorder.failures):
                recorder.pending.discard(key)

    @property
    def pending(self) -> set[str]:
        """Trials of this run whose MLflow record is still incomplete."""
        return {key for r in self.recorders for key in r.pending}

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
    db = sqlite_path(spec.tracking.uri)
    if db is not None and not db.exists():
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
