"""`TrackingStore`: what the ledger and the driver need of a tracking store, as one protocol.

Two stores implement it, each method explicitly: `mlflow_store.Tracker`
(MLflow) and `offline.OfflineTracker` (the server was unreachable at start:
it sees no runs and every write raises ConnectionError). A method added here
and missing from either fails tests/test_sweeps_ledger.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sweeps.ledger.mlflow_store import RunState, WholeTrial
    from sweeps.spec import Spec


@runtime_checkable
class TrackingStore(Protocol):
    """The sweep's runs: one parent per sweep, one child per trial (docs/ARCHITECTURE.md)."""

    online: bool  # False: nothing reaches the store; results wait in the journal for a sync
    parent_id: str | None

    # ---- reading
    def trial_runs(self) -> dict[str, RunState]: ...

    def parent_run_id(self) -> str | None: ...

    def join_parent(self) -> str | None: ...

    def parent_params(self) -> dict[str, str]: ...

    def logged_points(self, run_id: str) -> set[tuple[str, int]]: ...

    # ---- the parent run
    def start_parent(self, spec: Spec, spec_text: str) -> str: ...

    def end_parent(self, status: str) -> None: ...

    def log_parent_params(self, params: Mapping[str, Any]) -> None: ...

    def tag_parent(self, tags: Mapping[str, str]) -> None: ...

    def log_hierarchies(self, paths: Iterable[Path]) -> None: ...

    # ---- trial runs
    def open_trial(
        self,
        existing: RunState | None,
        *,
        key: str,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        spec_hash: str,
    ) -> str: ...

    def log_epochs(
        self,
        run_id: str,
        epochs: Sequence[Sequence[Any]],
        *,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None: ...

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
    ) -> None: ...

    def fail_trial(
        self,
        run_id: str,
        *,
        reason: str,
        attempts: int,
        params: Mapping[str, str] | None = None,
        epochs: Sequence[Sequence[Any]] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None: ...

    def set_status(self, run_id: str, status: str) -> None: ...

    def record_trials(self, trials: Sequence[WholeTrial], spec_hash: str) -> dict[str, str]: ...
