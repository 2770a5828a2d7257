"""The ledger's records: result files and worker events, as typed values with their JSON form.

The journal is `<storage>/results/<trial_key>.json` (a `TrialRecord`) and
`<trial_key>.failed.json` (a `FailureRecord`), written atomically: workers
write a record the moment a trial ends; the driver reads them to skip, sync
and summarise. A record's `history` holds one entry per (step, metric names),
merged with `add_epoch`; `retries` keeps why earlier attempts failed, so a
replay tags the run as a live driver would. Workers tell the driver what happens as `Event`s
(`Start`, `Epochs`, `Final`, `Failed`, `Retry`), sent as JSON through Ray.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from contracts import RETRY
from fileio import read_json


def result_path(storage: str | os.PathLike, trial_key: str) -> Path:
    """Where a finished logical trial's record lives."""
    return Path(storage) / "results" / f"{trial_key}.json"


def failure_path(storage: str | os.PathLike, trial_key: str) -> Path:
    """Where a logical trial that used up its retries records why."""
    return Path(storage) / "results" / f"{trial_key}.failed.json"


def read_results(storage: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """trial_key -> finished record, for every result file under `storage`."""
    return _read_records(storage, ".json", "result")


def read_failures(storage: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """trial_key -> failure record, for every `<key>.failed.json` under `storage`."""
    return _read_records(storage, ".failed.json", "reason")


def _read_records(storage: str | os.PathLike, suffix: str, needs: str) -> dict[str, Any]:
    """trial_key -> record of each `<key><suffix>` under `results/` whose JSON has `needs`."""
    out = {}
    folder = Path(storage) / "results"
    if folder.is_dir():
        for path in folder.glob(f"*{suffix}"):
            key = path.name.removesuffix(suffix)
            if suffix == ".json" and key.endswith(".failed"):
                continue  # a failure record, not a result
            record = read_json(path)
            if record and needs in record:
                out[key] = record
    return out


def add_epoch(history: list[list[Any]], entry: list[Any]) -> None:
    """Append `[step, metrics]`, replacing an earlier report of the same step and metrics.

    A trial restarted without a checkpoint reports its first epochs again; the
    history keeps one entry per (step, metric names), the latest.
    """
    names = sorted(entry[1])
    for i, (step, metrics) in enumerate(history):
        if step == entry[0] and sorted(metrics) == names:
            history[i] = entry
            return
    history.append(entry)


History = list  # [[step, {metric: value}], ...]
Retries = dict  # {"<attempt>": reason} of a trial's failed attempts before its last (JSON keys)
MAX_RETRY_REASON = 4000  # characters of a reason kept in its tag


def retry_tags(retries: Mapping[str | int, str] | None) -> dict[str, str]:
    """The run's `granularity.retry.<attempt>` tags: why each earlier attempt failed."""
    return {
        f"{RETRY}.{attempt}": reason[:MAX_RETRY_REASON]
        for attempt, reason in (retries or {}).items()
    }


def _to_json(record: Any) -> dict[str, Any]:
    """A record's fields as a JSON object; optional fields left unset (None) are left out."""
    return {
        f.name: getattr(record, f.name)
        for f in fields(record)
        if getattr(record, f.name) is not None
    }


def _from_json(cls: type, payload: Mapping[str, Any]) -> Any:
    """`cls` from its JSON object; keys it does not know (older or newer writers) are ignored."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in payload.items() if k in names})


@dataclass(frozen=True)
class TrialRecord:
    """A finished logical trial: `<storage>/results/<trial_key>.json`."""

    trial_key: str
    config: Mapping[str, Any]
    meta: Mapping[str, Any]  # run_name, role, tags, params: what `sync` logs it with
    result: Mapping[str, Any]
    history: History = field(default_factory=list)
    attempts: int = 1
    wall_s: float | None = None
    cpu_s: float | None = None  # the worker process's CPU time (None: written by the driver)
    finished_at: float | None = None
    retries: Retries | None = None  # why earlier attempts failed: a replay tags them too

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> TrialRecord:
        return _from_json(cls, payload)


@dataclass(frozen=True)
class FailureRecord:
    """A logical trial that used up its retries: `<storage>/results/<trial_key>.failed.json`."""

    trial_key: str
    reason: str
    attempts: int = 1
    invocation: str | None = None  # the `granularity run` that recorded it (not retried again)
    traceback: str | None = None
    config: Mapping[str, Any] | None = None  # with meta: what `sync` needs to log the failure
    meta: Mapping[str, Any] | None = None
    retries: Retries | None = None  # why attempts before the last failed: a replay tags them too

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> FailureRecord:
        return _from_json(cls, payload)


class _Event:
    """JSON form shared by the events: `{"event": <kind>, <fields>}`."""

    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, **_to_json(self)}


@dataclass(frozen=True)
class Start(_Event):
    """An attempt of a trial begins."""

    kind: ClassVar[str] = "start"
    trial_key: str
    attempt: int = 1


@dataclass(frozen=True)
class Epochs(_Event):
    """Epochs a trial reported: `[[step, {metric: value}], ...]`."""

    kind: ClassVar[str] = "epochs"
    trial_key: str
    epochs: History


@dataclass(frozen=True)
class Final(_Event):
    """A trial finished; `history` only when the driver may lack earlier epochs (a resume, a replay)."""

    kind: ClassVar[str] = "final"
    trial_key: str
    result: Mapping[str, Any]
    attempts: int = 1
    wall_s: float | None = None
    history: History | None = None


@dataclass(frozen=True)
class Failed(_Event):
    """A trial used up its retries."""

    kind: ClassVar[str] = "failed"
    trial_key: str
    reason: str
    attempts: int = 1
    invocation: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class Retry(_Event):
    """Attempt `attempt` of a trial failed with `reason`; the next attempt follows."""

    kind: ClassVar[str] = "retry"
    trial_key: str
    attempt: int
    reason: str


Event = Start | Epochs | Final | Failed | Retry
EVENTS: dict[str, type] = {cls.kind: cls for cls in (Start, Epochs, Final, Failed, Retry)}


def event_from_json(payload: Mapping[str, Any]) -> Event:
    """The event a worker sent; ValueError naming the kind when it is none of `EVENTS`."""
    kind = payload.get("event")
    if kind not in EVENTS:
        raise ValueError(f"unknown event {kind!r}; known: {', '.join(EVENTS)}")
    return _from_json(EVENTS[kind], payload)


def read_journal(
    storage: str | os.PathLike,
) -> tuple[dict[str, TrialRecord], dict[str, FailureRecord]]:
    """The journal under `storage` as typed records: (results, failures) by trial_key."""
    results = {k: TrialRecord.from_json(r) for k, r in read_results(storage).items()}
    failures = {k: FailureRecord.from_json(r) for k, r in read_failures(storage).items()}
    return results, failures
