"""`granularity sync`: replay the sweep's journal (`<storage>/results/`) into MLflow.

The replay goes through `Ledger.replay`, the same batches a live run logs.
"""

from __future__ import annotations

import json

from sweeps.errors import SweepError
from sweeps.ledger.ledger import Ledger
from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.records import read_journal
from sweeps.lock import driver_lock
from sweeps.spec import Spec


def sync_storage(spec: Spec) -> tuple[int, int]:
    """`granularity sync`: (trials written to MLflow, records in storage) for `spec`'s sweep.

    Takes the sweep's driver lock (a running driver syncs by itself), finds or
    creates the sweep's parent run, then replays the journal.
    """
    storage = spec.resolved_storage_path()
    if not (storage / "results").is_dir():
        raise SweepError(f"nothing to sync: {storage / 'results'} does not exist")
    with driver_lock(storage, "a `granularity run` is driving this sweep; it syncs by itself"):
        tracker = Tracker(spec)
        if tracker.join_parent() is None:
            tracker.start_parent(spec, json.dumps(spec.model_dump(mode="json"), indent=2))
            tracker.end_parent("FINISHED")
        records, failures = read_journal(storage)
        total = len(set(records) | set(failures))
        return Ledger(tracker, storage, spec.spec_hash()).replay(records, failures), total
