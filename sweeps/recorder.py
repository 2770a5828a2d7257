"""Turns workers' events into MLflow writes and result files (driver side)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from contracts import ROLE
from sweeps.interrupt import raise_if_interrupted
from sweeps.progress import Progress
from sweeps.results import add_epoch, failure_path, read_json, result_path, write_json_atomic
from sweeps.tracking import RunState, Tracker, WholeTrial, WriteQueue


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
    queued: set[str] = field(default_factory=set)  # trials with a write handed over (any outcome)

    # While the tracking server is unreachable, each trial's writes are skipped
    # (not retried event by event, which would stall the Tune loop in HTTP
    # retries); the server is tried again after this many seconds.
    OFFLINE_RETRY_S = 10.0

    def _track(self, key: str | Sequence[str], write: Callable[..., Any], *args: Any) -> None:
        """Do one MLflow write for trial `key` (or trials): on the writer thread while Ray runs, else now."""
        keys = [key] if isinstance(key, str) else list(key)
        self.queued.update(keys)
        if self.writer is not None:
            self.writer.submit(lambda: self._write(keys, write, *args))
        else:
            self._write(keys, write, *args)

    def _write(self, keys: Sequence[str], write: Callable[..., Any], *args: Any) -> None:
        """One MLflow write; on failure mark its trials pending and go on."""
        if any(k in self.pending for k in keys) or time.monotonic() < self.retry_tracking_at:
            self._pend(keys)
            return
        try:
            write(*args)
        except Exception as err:  # noqa: BLE001 (any tracking failure: the sweep goes on)
            self._pend(keys)
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

    def _pend(self, keys: Sequence[str]) -> None:
        """Trials `keys` wait for a sync; the progress line says how many do."""
        self.pending.update(keys)
        if self.progress:
            self.progress.pending = len(self.pending)

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
            tags={ROLE: meta["role"], **meta["tags"]},
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

    def is_whole(self, key: str, batch: dict[str, Any]) -> bool:
        """A trial's whole life in one batch: it ended and nothing of it was sent to MLflow yet."""
        return (
            ("final" in batch or "failed" in batch)
            and key not in self.runs
            and key not in self.queued
            and key not in self.open_runs
        )

    def log_whole(self, batches: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Trials that ended before any write of theirs: one new run each, all in one store call.

        Short trials end inside one report window, so a report of a pack of
        them becomes one transaction instead of four to five per trial.
        """
        trials = []
        for key, batch in batches:
            meta, ended = self.items[key]["meta"], batch.get("final") or batch["failed"]
            trials.append(
                WholeTrial(
                    key=key,
                    run_name=meta["run_name"],
                    tags={ROLE: meta["role"], **meta["tags"]},
                    params=meta["params"],
                    epochs=batch["epochs"],
                    config=self.items[key]["config"],
                    attempts=ended["attempts"],
                    result=batch["final"]["result"] if "final" in batch else None,
                    reason=batch["failed"]["reason"] if "failed" in batch else None,
                    wall_s=self.wall_s.get(key),
                )
            )
        self.open_runs.update(self.tracker.record_trials(trials, self.spec_hash))

    def on_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Book a report's events at once; queue their MLflow writes, one batch per trial."""
        raise_if_interrupted()
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
        whole = []
        for key, batch in batches.items():
            if self.is_whole(key, batch):
                whole.append((key, batch))
            else:
                self._track(key, self._log_batch, key, batch)
        if whole:
            self._track([k for k, _ in whole], self.log_whole, whole)
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
        raise_if_interrupted()
        if self.progress:
            self.progress.show()
