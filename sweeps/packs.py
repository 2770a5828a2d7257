"""The worker side of a pack: `run_pack` runs its logical trials one after another.

Launching a Ray trial costs seconds; a synthetic trial may take one. So the
driver packs logical trials (`sweeps.packing.make_packs`), keeping the trials
that share a pretraining together with that pretraining first, and a worker
runs a pack with `run_pack`. Each logical trial stands alone inside its pack:

- its final result (with its per-epoch history) is written atomically to
  `<storage>/results/<trial_key>.json` the moment it finishes, so neither a
  crashed pack nor a killed driver loses it, and a retried pack skips it;
  the files are flushed to disk in one `os.sync` before each report to the
  driver (an fsync per file cost ~7 ms, more than a short trial), so what
  the driver has booked is on disk, and a killed process loses nothing the
  kernel holds;
- an exception is retried in place (`retries` times, continuing from the
  trial's own checkpoint_dir) and then recorded as failed, and the pack moves
  on to its next trial; one whose `retryable` attribute is False (a
  deterministic failure such as a non-finite loss) is recorded failed at once;
- its per-epoch metrics are appended to `<checkpoint_dir>/history.jsonl` as
  they are reported, so a trial resumed after its worker (or node) died still
  has the epochs it reported before, even those whose events died unsent.

Workers talk to the driver through `emit(events)`: a list of events
(`sweeps.ledger.records`: `Start`, `Epochs`, `Final`, `Failed`, `Retry`, each
with its `trial_key`) in their JSON form; results and failures are written as
`TrialRecord` / `FailureRecord`. This module has no Ray in it; `ray_backend`
turns `emit` into `tune.report`.

A data-parallel pack (`resources.workers` > 1) runs `run_pack` on every Ray
Train worker, all on the same trials in the same order: rank 0 writes (results,
history, events; `writes=True`), the other ranks only compute. An exception
there is not retried in place (`raise_errors=True`): a rank failing alone
would leave the others waiting in DDP's all-reduce, so it ends the worker,
and Ray Train restarts the whole group, which skips finished trials and
resumes the current one from its checkpoint, as a retried pack does.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fileio import read_json, write_json_atomic
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
    result_path,
)
from sweeps.lock import is_current, worker_hold

Emit = Callable[[list[dict[str, Any]]], None]
Trainable = Callable[[dict, Callable[[dict, int], None] | None], dict]

# Events are batched: at most one round trip to the driver per this many seconds.
# A Ray Tune report costs a trip through the driver's Tune loop (~0.1 s here),
# more than a whole synthetic trial; results are safe on disk meanwhile.
FLUSH_S = 2.0


class Outbox:
    """Buffers a pack's events and sends them in batches (time-based, and at the end).

    A trial's `start` goes at once when trials are long (the pack's first
    trial, or one after a trial that took `flush_s` or more), so MLflow shows
    it running and the previous trial's result is not held back until the
    next report; short trials' events wait for the next flush window, so a
    run of short trials costs a few reports (and few MLflow writes) per window.
    """

    def __init__(self, emit: Emit, flush_s: float = FLUSH_S) -> None:
        self.emit = emit
        self.unsynced = False  # result files written since the last flush, not yet on disk
        self.flush_s = flush_s
        self.pending: list[dict[str, Any]] = []
        self.last = time.monotonic()
        self.trial_started: float | None = None  # when the current trial's start was put
        self.long_trials = True  # until a trial shows otherwise

    def put(self, typed: Event) -> None:
        """Queue an event (in its JSON form); flush when the window is over or a long trial starts."""
        event = typed.to_json()
        now = time.monotonic()
        if event["event"] == "start":
            self.trial_started = now
        elif event["event"] in ("final", "failed") and self.trial_started is not None:
            self.long_trials = now - self.trial_started >= self.flush_s
        if (
            event["event"] == "epochs"
            and self.pending
            and self.pending[-1]["event"] == "epochs"
            and self.pending[-1]["trial_key"] == event["trial_key"]
        ):
            self.pending[-1]["epochs"].extend(event["epochs"])
        else:
            self.pending.append(event)
        long_start = event["event"] == "start" and self.long_trials
        if long_start or now - self.last >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if self.unsynced:  # the results the driver is about to hear of reach the disk first
            os.sync()
            self.unsynced = False
        if self.pending:
            self.emit(self.pending)
            self.pending = []
        self.last = time.monotonic()


def _release_memory() -> None:
    """After a failed attempt (an out-of-memory error, say): free what it held before retrying."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")  # only if the trainable uses it; never imported here
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _read_history(path: Path | None) -> list[list[Any]]:
    """Per-epoch entries `[step, metrics]` a trial reported before (a torn last line is skipped)."""
    if path is None or not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            step, metrics = json.loads(line)
        except (json.JSONDecodeError, ValueError, TypeError):
            continue
        add_epoch(out, [int(step), metrics])
    return out


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[key] = float(value) if math.isfinite(value) else float("nan")
    return out


def _final_result(result: dict[str, Any]) -> dict[str, float | str]:
    """A trial's final metrics (numbers, NaN for non-finite) plus its string outputs.

    Strings (e.g. the trial's `test_correct`) become MLflow tags `granularity.<name>`.
    """
    strings = {k: v for k, v in result.items() if isinstance(v, str)}
    return {**_finite(result), **strings}


def run_pack(
    items: Sequence[dict[str, Any]],
    *,
    trainable: Trainable,
    emit: Emit,
    storage: str | os.PathLike,
    retries: int,
    invocation: str,
    writes: bool = True,
    raise_errors: bool = False,
) -> dict[str, int]:
    """Run a pack's logical trials in order; returns counts of finished/failed/skipped.

    Args:
        items: `{"config": trial config, "meta": {...}}` per logical trial.
        trainable: `train(config, report) -> dict`.
        emit: sends a list of events to the driver.
        storage: the sweep's storage directory (results are written there).
        retries: extra attempts per logical trial after an exception.
        invocation: id of this `granularity run`; a failure recorded by the same
            invocation is not retried again when Ray retries the whole pack.
        writes: False on the data-parallel ranks other than 0: no events, no files.
        raise_errors: let a trial's exception end the pack (data-parallel: Ray
            Train restarts the worker group) instead of retrying it in place.
    """
    with worker_hold(storage):  # a newer driver waits for this pack (sweeps/lock.py)
        counts = {"finished": 0, "failed": 0, "skipped": 0}
        outbox = Outbox(emit if writes else (lambda events: None))
        for item in items:
            if not is_current(storage, invocation):
                break  # this pack's driver is dead and a newer one holds the sweep: stop here
            config = item["config"]
            key = config["trial_key"]
            done = read_json(result_path(storage, key))
            if done and "result" in done:
                # Finished by an earlier attempt of this pack, whose events may have
                # died with its worker: replay the final event (the driver dedups).
                outbox.put(
                    Final(
                        trial_key=key,
                        result=done["result"],
                        attempts=done.get("attempts", 1),
                        wall_s=done.get("wall_s"),
                        history=done.get("history", []),
                    )
                )
                counts["skipped"] += 1
                continue
            failed = read_json(failure_path(storage, key))
            if failed and failed.get("invocation") == invocation:
                counts["skipped"] += 1
                continue
            outcome = _run_logical(
                item,
                trainable,
                outbox,
                storage,
                0 if raise_errors else retries,
                invocation,
                writes=writes,
                raise_errors=raise_errors,
            )
            counts[outcome] += 1
        outbox.flush()
        return counts


def _run_logical(
    item: dict[str, Any],
    trainable: Trainable,
    outbox: Outbox,
    storage: str | os.PathLike,
    retries: int,
    invocation: str,
    *,
    writes: bool = True,
    raise_errors: bool = False,
) -> str:
    config = item["config"]
    key = config["trial_key"]
    history_file = (
        Path(config["checkpoint_dir"]) / "history.jsonl"
        if config.get("checkpoint_dir") and writes
        else None
    )
    history = _read_history(history_file)
    resumed = bool(history)

    def report(metrics: dict[str, Any], step: int) -> None:
        entry = [int(step), _finite(metrics)]
        add_epoch(history, entry)
        if history_file is not None:
            history_file.parent.mkdir(parents=True, exist_ok=True)
            with open(history_file, "a") as handle:
                handle.write(json.dumps(entry) + "\n")
        outbox.put(Epochs(trial_key=key, epochs=[entry]))

    retried: dict[str, str] = {}  # the records keep them: a replay tags the run as a live driver
    for attempt in range(1, retries + 2):
        if attempt > 1:
            _release_memory()  # outside the except block: the failed frames are gone
        outbox.put(Start(trial_key=key, attempt=attempt))
        started, cpu_started = time.time(), time.process_time()
        try:
            result = trainable(dict(config), report)
        except Exception as err:  # noqa: BLE001 (any failure of user code is a trial failure)
            if raise_errors:
                outbox.flush()  # the epochs reported so far reach the driver before the restart
                raise
            tb = traceback.format_exc()[-8000:]
            reason = f"{type(err).__name__}: {err}"
            # An error that says it would recur (`retryable = False`, e.g. a
            # trainables.TrialError for a non-finite loss) is not retried.
            if attempt <= retries and getattr(err, "retryable", True):
                outbox.put(Retry(trial_key=key, attempt=attempt, reason=reason))
                retried[str(attempt)] = reason
                continue
            failed = Failed(
                trial_key=key,
                reason=reason,
                attempts=attempt,
                invocation=invocation,
                traceback=tb,
            )
            # With config and meta, `granularity sync` can log the failure if
            # the driver could not (tracking server down, driver killed).
            if writes:
                record = FailureRecord(
                    trial_key=key,
                    reason=reason,
                    attempts=attempt,
                    invocation=invocation,
                    traceback=tb,
                    config=config,
                    meta=item.get("meta", {}),
                    retries=retried or None,
                )
                write_json_atomic(failure_path(storage, key), record.to_json())
            outbox.put(failed)
            return "failed"
        record = TrialRecord(
            trial_key=key,
            config=config,
            meta=item.get("meta", {}),
            result=_final_result(dict(result or {})),
            history=history,
            attempts=attempt,
            wall_s=time.time() - started,
            cpu_s=time.process_time() - cpu_started,
            finished_at=time.time(),
            retries=retried or None,
        )
        if writes:
            write_json_atomic(result_path(storage, key), record.to_json(), fsync=False)
            outbox.unsynced = True
            failure_path(storage, key).unlink(missing_ok=True)
        # `history` only on a resume: epochs of an earlier worker, whose events may never
        # have arrived.
        outbox.put(
            Final(
                trial_key=key,
                result=record.result,
                attempts=attempt,
                wall_s=record.wall_s,
                history=history if resumed else None,
            )
        )
        return "finished"
    raise AssertionError("unreachable")
