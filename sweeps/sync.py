"""Result files -> MLflow: log what `<storage>/results/` holds and MLflow lacks (`granularity sync`)."""

from __future__ import annotations

import json
from pathlib import Path

from sweeps.errors import SweepError
from sweeps.lock import driver_lock
from sweeps.recorder import Recorder
from sweeps.results import read_failures, read_results
from sweeps.spec import Spec
from sweeps.tracking import Tracker

SYNC_CHUNK = 2000  # trials per store transaction when syncing runs MLflow lacks entirely


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
    whole: list[tuple[str, dict]] = []  # trials with no run at all: written in bulk
    for key, record in results.items():
        state = runs.get(key)
        if state is not None and state.status == "FINISHED":
            continue
        meta = record.get("meta") or {}
        if not meta:
            continue
        recorder.items[key] = {"config": record["config"], "meta": meta}
        final = {"result": record["result"], "attempts": record.get("attempts", 1)}
        batch = {"epochs": record.get("history") or [], "final": final}
        if state is None:
            recorder.wall_s[key] = record.get("wall_s") or 0.0
            whole.append((key, batch))
        else:
            recorder._log_batch(key, batch)
        synced += 1
    for i in range(0, len(whole), SYNC_CHUNK):
        recorder.log_whole(whole[i : i + SYNC_CHUNK])
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


def sync_storage(spec: Spec) -> tuple[int, int]:
    """`granularity sync`: (trials written to MLflow, records in storage) for `spec`'s sweep.

    Takes the sweep's driver lock (a running driver syncs by itself), finds or
    creates the sweep's parent run, then `sync_results`.
    """
    storage = spec.resolved_storage_path()
    if not (storage / "results").is_dir():
        raise SweepError(f"nothing to sync: {storage / 'results'} does not exist")
    with driver_lock(storage, "a `granularity run` is driving this sweep; it syncs by itself"):
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
