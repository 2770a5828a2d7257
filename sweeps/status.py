"""`granularity status`: each planned trial's state, from MLflow and the result files, read only."""

from __future__ import annotations

from contracts import CELL_COLUMNS
from fileio import read_json
from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.records import read_results
from sweeps.ledger.tracking_uri import sqlite_path
from sweeps.lock import driver_running
from sweeps.spec import Spec
from sweeps.trials import Plan

FACTORS = (*CELL_COLUMNS, "seed")


def plan_factors(plan: Plan) -> list[str]:
    """The factors a status table is made for: FACTORS plus the plan's crossed ones, in order."""
    crossed = dict.fromkeys(name for t in plan.trials for name, _ in t.variant)
    return [*FACTORS[:-1], *crossed, FACTORS[-1]]


def trial_states(spec: Spec, plan: Plan) -> dict[str, tuple[str, str | None]]:
    """trial_key -> (done | running | failed | missing, failure reason) for the plan's trials.

    Reads MLflow without creating anything (no store, no experiment) plus the
    result files a killed driver may have left unsynced (those count as done).
    """
    tracker = open_tracker_readonly(spec)
    runs = tracker.trial_runs() if tracker else {}
    stored = read_results(plan.storage)
    driver_alive = driver_running(plan.storage)
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
