"""A tracking server unreachable when a sweep starts: the sweep runs anyway and writes MLflow later.

`connect(spec)` is the driver's `Tracker` with its parent run, or, when the
server (or a SQL database behind a server URI) does not answer, an
`OfflineTracker`: it sees no runs (finished trials are known by their
result files, which workers replay instead of rerunning) and every write
raises ConnectionError, so the recorder keeps each trial "pending sync"
while its result stays under `<storage>/results/`. At the end
`reconnect(spec, ...)` tries the server once more and syncs; otherwise the
next `granularity run` or `granularity sync` writes each pending result,
once (`Ledger.replay` logs only what MLflow lacks).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sweeps.ledger.ledger import replay_journal
from sweeps.ledger.mlflow_store import RunState, Tracker, WholeTrial
from sweeps.spec import SQL_SCHEMES, Spec, tracking_scheme


class OfflineTracker:
    """Stands in for `Tracker` while the tracking server is unreachable (see the module docstring).

    A `TrackingStore`: it sees no runs, and every other method raises ConnectionError.
    """

    online = False

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        self.parent_id: str | None = None

    def _down(self) -> ConnectionError:
        return ConnectionError(f"tracking server {self.uri} unreachable at start ({self.reason})")

    def trial_runs(self) -> dict[str, RunState]:
        return {}

    def parent_run_id(self) -> str | None:
        raise self._down()

    def join_parent(self) -> str | None:
        raise self._down()

    def parent_params(self) -> dict[str, str]:
        raise self._down()

    def logged_points(self, run_id: str) -> set[tuple[str, int]]:
        raise self._down()

    def start_parent(self, spec: Spec, spec_text: str) -> str:
        raise self._down()

    def end_parent(self, status: str) -> None:
        raise self._down()

    def log_parent_params(self, params: Mapping[str, Any]) -> None:
        raise self._down()

    def tag_parent(self, tags: Mapping[str, str]) -> None:
        raise self._down()

    def log_hierarchies(self, paths: Iterable[Path]) -> None:
        raise self._down()

    def open_trial(
        self,
        existing: RunState | None,
        *,
        key: str,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        spec_hash: str,
    ) -> str:
        raise self._down()

    def log_epochs(
        self,
        run_id: str,
        epochs: Sequence[Sequence[Any]],
        *,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        raise self._down()

    def finish_trial(
        self,
        run_id: str,
        *,
        result: Mapping[str, float],
        config: Mapping[str, Any],
        attempts: int,
        params: Mapping[str, str] | None = None,
        epochs: Sequence[Sequence[Any]] = (),
        tags: Mapping[str, str] | None = None,
        skip_logged: bool = False,
    ) -> None:
        raise self._down()

    def fail_trial(
        self,
        run_id: str,
        *,
        reason: str,
        attempts: int,
        params: Mapping[str, str] | None = None,
        epochs: Sequence[Sequence[Any]] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        raise self._down()

    def set_status(self, run_id: str, status: str) -> None:
        raise self._down()

    def record_trials(self, trials: Sequence[WholeTrial], spec_hash: str) -> dict[str, str]:
        raise self._down()


def unreachable(uri: str, err: BaseException) -> bool:
    """Whether `err` says the tracking server (not the spec, not the store's content) is down."""
    if tracking_scheme(uri) == "sqlite":
        return False  # a local file: its errors are the store's own, named by Tracker
    import sqlalchemy.exc

    seen: BaseException | None = err
    for _ in range(10):  # MLflow wraps the connection error: walk the chain
        if seen is None:
            return False
        if isinstance(seen, OSError | TimeoutError):  # requests' errors are OSErrors
            return True
        if (
            isinstance(seen, sqlalchemy.exc.OperationalError)
            and tracking_scheme(uri) in SQL_SCHEMES
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def refused_credentials(err: BaseException) -> bool:
    """Whether MLflow's server answered 401/403 (its basic-auth app: no or wrong credentials)."""
    code = str(getattr(err, "error_code", ""))
    text = str(err)
    return code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or any(
        f"error code {n}" in text or f"status code {n}" in text for n in (401, 403)
    )


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}"


def connect(spec: Spec, *, stream: Any = None) -> Tracker | OfflineTracker:
    """The sweep's Tracker with its parent run RUNNING; an OfflineTracker when the server is down."""
    try:
        tracker = Tracker(spec)  # creates the store and experiment before any trial starts
        tracker.start_parent(spec, json.dumps(spec.model_dump(mode="json"), indent=2))
        return tracker
    except Exception as err:
        if refused_credentials(err):
            raise ConnectionError(
                f"tracking server {spec.tracking.uri} refused the credentials "
                f"({_first_line(err)}); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD for its basic-auth app (docs/CLUSTER.md)"
            ) from None
        if not unreachable(spec.tracking.uri, err):
            raise
        if spec.search is not None:
            raise ConnectionError(
                f"tracking server {spec.tracking.uri} unreachable ({_first_line(err)}); the "
                "search reads and writes its choices there, so it cannot start without it"
            ) from None
        print(
            f"warning: tracking server {spec.tracking.uri} unreachable ({_first_line(err)}); "
            f"the sweep runs anyway, results stay in {spec.resolved_storage_path() / 'results'} "
            "and are written to MLflow at the end, by the next run or `granularity sync`",
            file=stream if stream is not None else sys.stderr,
            flush=True,
        )
        return OfflineTracker(spec.tracking.uri, _first_line(err))


def reconnect(spec: Spec, storage: Path, hierarchy_files: list[Path]) -> tuple[Tracker, int] | None:
    """After an offline run: (Tracker, trials synced) if the server answers now, else None."""
    try:
        tracker = Tracker(spec)
        tracker.start_parent(spec, json.dumps(spec.model_dump(mode="json"), indent=2))
        tracker.log_hierarchies(hierarchy_files)
        return tracker, replay_journal(tracker, storage, spec.spec_hash())
    except Exception as err:
        if unreachable(spec.tracking.uri, err):
            return None
        raise
