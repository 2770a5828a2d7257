"""The result-file store: `<storage>/results/<trial_key>.json` and `.failed.json`, written atomically.

Workers write a record the moment a trial ends; the driver reads them to skip,
sync and summarise. A record's `history` holds one entry per (step, metric
names), merged with `add_epoch`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hierarchies.core import write_atomic


def result_path(storage: str | os.PathLike, trial_key: str) -> Path:
    """Where a finished logical trial's record lives."""
    return Path(storage) / "results" / f"{trial_key}.json"


def failure_path(storage: str | os.PathLike, trial_key: str) -> Path:
    """Where a logical trial that used up its retries records why."""
    return Path(storage) / "results" / f"{trial_key}.failed.json"


def write_json_atomic(path: Path, payload: Any, *, fsync: bool = True) -> None:
    """Write JSON so that a reader (or a crash) never sees half a file (`fsync`: see write_atomic)."""
    write_atomic(path, json.dumps(payload).encode(), fsync=fsync)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at `path`, or None when missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


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
