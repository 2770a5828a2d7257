"""The driver's ledger of one run of trials: books workers' events into result files and MLflow.

`Ledger` is the one way in: `expect` the trials, `adopt` results known from an
earlier run, `book` workers' events (while `writing_in_background`, MLflow
writes go to a thread so the Tune loop never waits on MLflow), `fail_pack`
when Ray gives up on a pack, `mark_killed` what is left open, and `replay`
the journal of result files into MLflow (`granularity sync`, and after an
outage). Its views (`results`, `failures`, `pending`, ...) are read-only.
A live run and a replay log through the same batches, so they write the same.

Longer than 400 lines because it is one class, whose public methods are the record path's only
door; splitting it would make its private state a seam again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

from contracts import ROLE
from fileio import read_json, write_json_atomic
from sweeps.interrupt import raise_if_interrupted
from sweeps.ledger.mlflow_store import RunState, WholeTrial
from sweeps.ledger.records import (
    Epochs,
    Event,
    Failed,
    FailureRecord,
    Final,
    Retry,
    Start,
    TrialRecord,
    add_epoch,
    failure_path,
    read_journal,
    result_path,
    retry_tags,
)
from sweeps.ledger.store import TrackingStore
from sweeps.ledger.write_queue import WriteQueue
from sweeps.progress import Progress

REPLAY_CHUNK = 2000  # trials per store transaction when replaying runs MLflow lacks entirely


class Ledger:
    """Books one run's trials: result files on disk, runs in the tracking store (driver side)."""

    # While the tracking server is unreachable, each trial's writes are skipped
    # (not retried event by event, which would stall the Tune loop in HTTP
    # retries); the server is tried again after this many seconds.
    OFFLINE_RETRY_S = 10.0

    def __init__(
        self,
        store: TrackingStore,
        storage: Path,
        spec_hash: str,
        *,
        runs: Mapping[str, RunState] | None = None,
        progress: Progress | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self._store = store
        self._storage = storage
        self._spec_hash = spec_hash
        self._runs = dict(runs if runs is not None else store.trial_runs())
        self._progress = progress
        self._stream = stream
        self._items: dict[str, dict[str, Any]] = {}  # trial_key -> {"config", "meta"}
        self._open_runs: dict[str, str] = {}
        self._history: dict[str, list] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, str] = {}
        self._wall_s: dict[str, float] = {}
        self._attempts: dict[str, int] = {}
        self._retries: dict[str, dict[str, str]] = {}  # trial_key -> {"<attempt>": reason}
        self._finished_now: list[str] = []
        self._pending: set[str] = set()  # trials whose MLflow writes failed
        self._logged: dict[str, set[tuple[str, int]]] = {}  # (metric, step) in MLflow
        self._queued: set[str] = set()  # trials with a write handed over (any outcome)
        self._tracking_errors = 0
        self._retry_tracking_at = 0.0  # while offline, MLflow is not tried before this
        self._writer: WriteQueue | None = None
        self.scheduled = 0  # trials handed to Ray
        self.reused = 0  # results known before this run (not counted as finished now)
        self.packs = 0  # Ray trials they ran in

    # ---- read-only views ------------------------------------------------------
    @property
    def results(self) -> Mapping[str, Mapping[str, Any]]:
        """trial_key -> final metrics, of trials finished now or adopted."""
        return MappingProxyType(self._results)

    @property
    def failures(self) -> Mapping[str, str]:
        """trial_key -> reason, of trials that failed in this run."""
        return MappingProxyType(self._failures)

    @property
    def finished_now(self) -> Sequence[str]:
        """Trials finished in this run, in the order they finished."""
        return tuple(self._finished_now)

    @property
    def expected(self) -> Mapping[str, Mapping[str, Any]]:
        """trial_key -> {"config", "meta"} of the trials this ledger books."""
        return MappingProxyType(self._items)

    @property
    def wall_s(self) -> Mapping[str, float]:
        """trial_key -> the wall time of its last attempt, of trials finished now."""
        return MappingProxyType(self._wall_s)

    @property
    def pending(self) -> frozenset[str]:
        """Trials whose MLflow record is incomplete (their result files wait for a sync)."""
        return frozenset(self._pending)

    # ---- what the run is about --------------------------------------------------
    def expect(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        """The trials this ledger books: trial_key -> {"config", "meta"} (events of others are dropped)."""
        self._items.update({k: dict(v) for k, v in items.items()})

    def adopt(self, results: Mapping[str, Mapping[str, Any]]) -> None:
        """Results of expected trials finished before this run (reused, not counted as finished now)."""
        for key, result in results.items():
            self._results[key] = dict(result)
            self.reused += 1

    def schedule(self, trials: int, packs: int) -> None:
        """`trials` trials handed to Ray in `packs` Ray trials."""
        self.scheduled, self.packs = trials, packs

    @contextmanager
    def writing_in_background(self) -> Iterator[None]:
        """MLflow writes go to one background thread meanwhile; on exit every one has been done."""
        self._writer = WriteQueue()
        try:
            yield
        finally:
            self._writer.close()
            self._writer = None

    # ---- booking -------------------------------------------------------------
    def book(self, events: Sequence[Event]) -> None:
        """Book a report's events at once; queue their MLflow writes, one batch per trial."""
        raise_if_interrupted()
        batches: dict[str, dict[str, Any]] = {}
        for event in events:
            key = event.trial_key
            if key not in self._items:
                continue  # not ours (a stale worker of an older plan)
            batch = batches.setdefault(key, {"epochs": []})
            if isinstance(event, Start):
                self._attempts[key] = event.attempt
                if event.attempt == 1 and self._progress:
                    self._progress.running += 1
            elif isinstance(event, Epochs):
                self._keep_epochs(key, event.epochs)
                batch["epochs"].extend(event.epochs)
            elif isinstance(event, Retry):
                # The reason of each failed attempt stays on the run, beside the final outcome.
                self._retries.setdefault(key, {})[str(event.attempt)] = event.reason
                batch.setdefault("tags", {}).update(retry_tags({event.attempt: event.reason}))
            elif isinstance(event, Final):
                if event.history is not None and key not in self._results:
                    # A replay or a resumed trial: the epochs this driver has not seen.
                    self._keep_epochs(key, event.history)
                    batch["epochs"].extend(event.history)
                if self._finish(key, event.result, event.attempts, event.wall_s):
                    batch["final"] = {"result": event.result, "attempts": event.attempts}
            elif isinstance(event, Failed):
                if self._fail(key, event.reason, event.attempts):
                    batch["failed"] = {"reason": event.reason, "attempts": event.attempts}
        self._send(batches)
        if self._progress:
            self._progress.show()

    def fail_pack(self, keys: Sequence[str], message: str) -> None:
        """A whole pack died (after Ray's retries): its unfinished trials failed with it."""
        for key in keys:
            reason = f"Ray trial failed: {message}"
            attempts = self._attempts.get(key, 1)
            if self._fail(key, reason, attempts):
                failed = {"reason": reason, "attempts": attempts}
                self._track(key, self._log_batch, key, {"epochs": [], "failed": failed})

    def tick(self) -> None:
        """Between reports: a Ctrl-C is noticed, the progress line redrawn."""
        raise_if_interrupted()
        if self._progress:
            self._progress.show()

    def mark_killed(self, keys: Sequence[str]) -> None:
        """Runs of `keys` left open (Ctrl-C, a crash of the driver's loop) say so: KILLED.

        Their trials rerun next time (or sync, if a worker finished them
        meanwhile). MLflow is asked too: an interrupt can land after a run was
        created and before the driver noted its id.
        """
        open_keys = [
            k
            for k in keys
            if k not in self._results and k not in self._failures and k not in self._pending
        ]
        if not open_keys:
            return
        try:
            states = self._store.trial_runs()
        except Exception:  # noqa: BLE001 (unreachable: the next run finds them RUNNING)
            states = {}
        for key in open_keys:
            state = states.get(key)
            run_id = self._open_runs.get(key)
            if run_id is None and state is not None and state.status == "RUNNING":
                run_id = state.run_id
            if run_id is not None and (state is None or state.status == "RUNNING"):
                self._track(key, self._store.set_status, run_id, "KILLED")

    # ---- the journal -----------------------------------------------------------
    def replay(
        self,
        records: Mapping[str, TrialRecord],
        failures: Mapping[str, FailureRecord] | None = None,
    ) -> int:
        """Log what the journal holds and MLflow lacks; returns how many trials were logged.

        A result whose trial has no FINISHED run finishes that run (or a new
        child run); a failure of a trial with no result marks its run FAILED
        unless MLflow already has it FINISHED or FAILED. Only what a run lacks
        is logged, so replaying twice (or after a partial write) duplicates
        nothing. Writes go straight to the store (a failure raises).
        """
        replayed = 0
        whole: list[tuple[str, dict[str, Any]]] = []  # trials with no run at all: in bulk
        for key, record in records.items():
            state = self._runs.get(key)
            if (state is not None and state.status == "FINISHED") or not record.meta:
                continue
            self._items[key] = {"config": record.config, "meta": record.meta}
            final = {"result": record.result, "attempts": record.attempts}
            batch = {"epochs": record.history or [], "final": final}
            if record.retries:
                batch["tags"] = retry_tags(record.retries)
            if state is None:
                self._wall_s[key] = record.wall_s or 0.0
                whole.append((key, batch))
            else:
                self._log_batch(key, batch)
            replayed += 1
        for i in range(0, len(whole), REPLAY_CHUNK):
            self._log_whole(whole[i : i + REPLAY_CHUNK])
        for key, failure in (failures or {}).items():
            state = self._runs.get(key)
            if key in records or (state is not None and state.status in ("FINISHED", "FAILED")):
                continue
            if not failure.meta or failure.config is None:
                continue
            self._items[key] = {"config": failure.config, "meta": failure.meta}
            failed = {"reason": failure.reason, "attempts": failure.attempts}
            self._log_batch(
                key, {"epochs": [], "failed": failed, "tags": retry_tags(failure.retries)}
            )
            replayed += 1
        return replayed

    def settle_pending(self) -> None:
        """After an outage: replay the journal if the server is back; trials MLflow now has stop pending."""
        try:
            replay_journal(self._store, self._storage, self._spec_hash)
            runs = self._store.trial_runs()
        except Exception:  # noqa: BLE001 (still unreachable: stays pending)
            return
        for key in list(self._pending):
            state = runs.get(key)
            status = state.status if state else None
            if status == "FINISHED" or (status == "FAILED" and key in self._failures):
                self._pending.discard(key)

    # ---- inside -----------------------------------------------------------------
    def _send(self, batches: Mapping[str, dict[str, Any]]) -> None:
        """Queue each trial's batch; trials whose whole life is in one batch go in bulk."""
        whole = []
        for key, batch in batches.items():
            if self._is_whole(key, batch):
                whole.append((key, batch))
            else:
                self._track(key, self._log_batch, key, batch)
        if whole:
            self._track([k for k, _ in whole], self._log_whole, whole)

    def _track(self, key: str | Sequence[str], write: Callable[..., Any], *args: Any) -> None:
        """Do one MLflow write for trial `key` (or trials): on the writer thread, else now."""
        keys = [key] if isinstance(key, str) else list(key)
        self._queued.update(keys)
        if self._writer is not None:
            self._writer.submit(lambda: self._write(keys, write, *args))
        else:
            self._write(keys, write, *args)

    def _write(self, keys: Sequence[str], write: Callable[..., Any], *args: Any) -> None:
        """One MLflow write; on failure mark its trials pending and go on."""
        if any(k in self._pending for k in keys) or time.monotonic() < self._retry_tracking_at:
            self._pend(keys)
            return
        try:
            write(*args)
        except Exception as err:  # noqa: BLE001 (any tracking failure: the sweep goes on)
            self._pend(keys)
            self._tracking_errors += 1
            self._retry_tracking_at = time.monotonic() + self.OFFLINE_RETRY_S
            if self._tracking_errors == 1:
                text = str(err).strip().splitlines()
                print(
                    f"warning: MLflow write failed ({type(err).__name__}: "
                    f"{text[0][:200] if text else ''}); trials go on, results stay in "
                    f"{self._storage / 'results'} and are synced when the server is back",
                    file=self._stream if self._stream is not None else sys.stderr,
                    flush=True,
                )

    def _pend(self, keys: Sequence[str]) -> None:
        """Trials `keys` wait for a sync; the progress line says how many do."""
        self._pending.update(keys)
        if self._progress:
            self._progress.pending = len(self._pending)

    def _keep_epochs(self, key: str, epochs: Sequence[Sequence[Any]]) -> None:
        history = self._history.setdefault(key, [])
        for step, values in epochs:
            add_epoch(history, [int(step), dict(values)])

    def _open(self, key: str) -> tuple[str, dict[str, str]]:
        """The trial's run id, and the params still to log (a new run's go with its first batch)."""
        if key in self._open_runs:
            return self._open_runs[key], {}
        meta = self._items[key]["meta"]
        existing = self._runs.get(key)
        if existing is not None:  # a resumed run: what an earlier driver logged stays once
            self._logged[key] = self._store.logged_points(existing.run_id)
        self._open_runs[key] = self._store.open_trial(
            existing,
            key=key,
            run_name=meta["run_name"],
            tags={ROLE: meta["role"], **meta["tags"]},
            params=meta["params"] if existing is not None else {},
            spec_hash=self._spec_hash,
        )
        return self._open_runs[key], ({} if existing is not None else dict(meta["params"]))

    def _log_batch(self, key: str, batch: dict[str, Any]) -> None:
        """One trial's events of one report in as few MLflow calls as possible.

        `batch`: `{"epochs": [[step, metrics], ...]}`, plus `"final": {"result",
        "attempts"}` or `"failed": {"reason", "attempts"}`, and `"tags"` (retry
        reasons). Each (metric, step) is logged once per run (a resumed run's
        earlier points are read first).
        """
        run_id, params = self._open(key)
        seen = self._logged.setdefault(key, set())
        tags = batch.get("tags", {})
        epochs = []
        for step, values in batch["epochs"]:
            new = {n: v for n, v in values.items() if (n, int(step)) not in seen}
            if new:
                epochs.append([int(step), new])
        if "final" in batch:
            self._store.finish_trial(
                run_id,
                result=batch["final"]["result"],
                config=self._items[key]["config"],
                attempts=batch["final"]["attempts"],
                params=params,
                epochs=epochs,
                tags=tags,
                skip_logged=key in self._runs,  # an earlier driver may have logged some of it
            )
        elif "failed" in batch:
            self._store.fail_trial(
                run_id,
                reason=batch["failed"]["reason"],
                attempts=batch["failed"]["attempts"],
                params=params,
                epochs=epochs,
                tags=tags,
            )
        elif params or epochs or tags:
            self._store.log_epochs(run_id, epochs, params=params, tags=tags)
        seen.update((n, step) for step, values in epochs for n in values)

    def _is_whole(self, key: str, batch: dict[str, Any]) -> bool:
        """A trial's whole life in one batch: it ended and nothing of it was sent to MLflow yet."""
        return (
            ("final" in batch or "failed" in batch)
            and key not in self._runs
            and key not in self._queued
            and key not in self._open_runs
        )

    def _log_whole(self, batches: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Trials that ended before any write of theirs: one new run each, all in one store call.

        Short trials end inside one report window, so a report of a pack of
        them becomes one transaction instead of four to five per trial.
        """
        trials = []
        for key, batch in batches:
            meta, ended = self._items[key]["meta"], batch.get("final") or batch["failed"]
            trials.append(
                WholeTrial(
                    key=key,
                    run_name=meta["run_name"],
                    tags={ROLE: meta["role"], **meta["tags"], **batch.get("tags", {})},
                    params=meta["params"],
                    epochs=batch["epochs"],
                    config=self._items[key]["config"],
                    attempts=ended["attempts"],
                    result=batch["final"]["result"] if "final" in batch else None,
                    reason=batch["failed"]["reason"] if "failed" in batch else None,
                    wall_s=self._wall_s.get(key),
                )
            )
        self._open_runs.update(self._store.record_trials(trials, self._spec_hash))

    def _finish(
        self, key: str, result: Mapping[str, Any], attempts: int, wall_s: float | None
    ) -> bool:
        """Book a finished trial (False if it was booked before)."""
        if key in self._results:
            return False
        item = self._items[key]
        path = result_path(self._storage, key)
        if not path.exists():  # the worker's copy is missing (storage not shared): keep ours
            record = TrialRecord(
                trial_key=key,
                config=item["config"],
                meta=item["meta"],
                result=result,
                history=self._history.get(key, []),
                attempts=attempts,
                wall_s=wall_s,
                finished_at=time.time(),
                retries=self._retries.get(key),
            )
            write_json_atomic(path, {**record.to_json(), "wall_s": wall_s})
        self._results[key] = dict(result)
        self._finished_now.append(key)
        if wall_s is not None:
            self._wall_s[key] = wall_s
        if self._progress:
            self._progress.done += 1
            self._progress.running = max(0, self._progress.running - 1)
        return True

    def _fail(self, key: str, reason: str, attempts: int) -> bool:
        """Book a failed trial (False if it was booked, finished or failed, before)."""
        if key in self._results or key in self._failures:
            return False
        path = failure_path(self._storage, key)
        written = read_json(path)
        if not written or "meta" not in written:  # a pack that died (no worker record)
            record = FailureRecord(
                trial_key=key,
                reason=reason,
                attempts=attempts,
                config=self._items[key]["config"],
                meta=self._items[key]["meta"],
                retries=self._retries.get(key),
            )
            write_json_atomic(path, {**record.to_json(), **(written or {})})
        self._failures[key] = reason
        if self._progress:
            self._progress.failed += 1
            self._progress.running = max(0, self._progress.running - 1)
        return True


def replay_journal(store: TrackingStore, storage: Path, spec_hash: str) -> int:
    """Replay every record under `storage` that `store` lacks; returns how many trials were logged."""
    return Ledger(store, storage, spec_hash).replay(*read_journal(storage))
