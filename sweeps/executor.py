"""Runs a list of trials on Ray as packs, skipping those MLflow has FINISHED (driver side)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from sweeps.errors import SweepError
from sweeps.ledger.ledger import Ledger
from sweeps.ledger.records import read_results
from sweeps.ledger.store import TrackingStore
from sweeps.packing import make_packs
from sweeps.packs import Trainable
from sweeps.progress import Progress
from sweeps.spec import Spec
from sweeps.trials import Trial


def resource_problem(spec: Spec, resources: dict[str, float], *, cluster: bool) -> str | None:
    """Why a trial of `spec` can never be placed on a Ray with `resources`, or None.

    A local Ray has what it has. A cluster may grow (an autoscaler adds GPU
    nodes on demand, and reports none before), so there a one-process trial is
    left to Ray; a data-parallel trial is refused once the cluster shows GPUs
    but fewer than one trial needs (it would wait forever).
    """
    res = spec.resources
    gpus, need = resources.get("GPU", 0.0), res.per_trial["gpu"]
    if need <= gpus:
        return None
    if not cluster and res.workers == 1:
        return (
            f"resources.gpu={res.gpu:g} per trial, but this machine's Ray has {gpus:g} GPU(s); "
            "use resources.gpu=0 device=cpu (or --smoke), or a cluster (--address)"
        )
    if res.workers > 1 and (not cluster or gpus > 0):
        where = "the cluster" if cluster else "this machine's Ray"
        return (
            f"resources: workers={res.workers} x gpu={res.gpu:g} = {need:g} GPUs per trial, "
            f"but {where} has {gpus:g}; "
            + (f"lower resources.workers to {int(gpus)}" if gpus >= 1 else "use resources.gpu=0")
            + " or add GPU nodes"
        )
    return None


class RaySource(Protocol):
    """The sweep's one Ray (sweeps/runner.py `RayStart`): started there, handed to the executor."""

    def session(self) -> Any:
        """The started (or starting) ray_backend.BackgroundSession."""

    def close(self) -> None:
        """Shut the session down (a no-op when none was started)."""


@dataclass
class Executor:
    """Runs a list of trials on Ray (inside a ray_session), skipping those already done."""

    spec: Spec
    tracker: TrackingStore
    trainable: Trainable
    storage: Path
    verbose: bool
    stream: TextIO | None
    invocation: str
    ray: RaySource
    address: str | None = None
    _resources: dict[str, float] | None = None
    ledgers: list[Ledger] = field(default_factory=list)
    # Trials to run again although MLflow has them FINISHED (made by other code:
    # sweeps/code_version.py); each gets a new run, newer than the stale one.
    rerun: set[str] = field(default_factory=set)

    @property
    def slots(self) -> int:
        """Ray trials at once: max_concurrent, else what the cluster's CPUs/GPUs allow."""
        if self.spec.max_concurrent or self._resources is None:
            return self.spec.slots()
        per = self.spec.resources.per_trial  # a data-parallel trial holds all its workers'
        slots = int(self._resources.get("CPU", 1) // per["cpu"])
        if per["gpu"]:
            slots = min(slots, int(self._resources.get("GPU", 0) // per["gpu"]))
        return max(1, slots)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ray.close()

    def _ensure_ray(self) -> None:
        if self._resources is not None:
            return
        try:
            self._resources = self.ray.session().wait()["resources"]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        problem = resource_problem(
            self.spec, self._resources, cluster=bool(self.address or os.environ.get("RAY_ADDRESS"))
        )
        if problem:
            self.__exit__(None, None, None)
            self._resources = None
            raise SweepError(problem)

    def __call__(
        self, trials: Sequence[Trial], metas: dict[str, dict], label: str, pack: str | int
    ) -> Ledger:
        """Run `trials` not FINISHED yet; the returned Ledger holds results old and new."""
        from sweeps import ray_backend

        rerun = self.rerun & {t.trial_key for t in trials}
        self.rerun -= rerun  # once: a later round's call finds the new run FINISHED
        runs = {k: v for k, v in self.tracker.trial_runs().items() if k not in rerun}
        stored = read_results(self.storage)
        items = {t.trial_key: {"config": t.config, "meta": metas[t.trial_key]} for t in trials}
        todo = [
            t
            for t in trials
            if not (t.trial_key in runs and runs[t.trial_key].status == "FINISHED")
        ]
        progress = None if self.verbose else Progress(len(todo), stream=self.stream, label=label)
        ledger = Ledger(
            self.tracker,
            self.storage,
            self.spec.spec_hash(),
            runs=runs,
            progress=progress,
            stream=self.stream,
        )
        self.ledgers.append(ledger)
        ledger.expect(items)
        todo_keys = {t.trial_key for t in todo}
        # Results of trials done before, for the search's bookkeeping.
        ledger.adopt(
            {
                t.trial_key: stored[t.trial_key]["result"]
                for t in trials
                if t.trial_key not in todo_keys and t.trial_key in stored
            }
        )
        if not todo:
            return ledger
        self._ensure_ray()
        packs = make_packs(todo, slots=self.slots, pack=pack)
        ledger.schedule(len(todo), len(packs))
        try:
            with ledger.writing_in_background():
                self._run(ray_backend, packs, items, ledger, label)
        finally:
            ledger.mark_killed([t.trial_key for t in todo])
        if ledger.pending:
            ledger.settle_pending()
        if progress:
            progress.show(force=True)
        return ledger

    @property
    def pending(self) -> set[str]:
        """Trials of this run whose MLflow record is still incomplete."""
        return {key for ledger in self.ledgers for key in ledger.pending}

    def _run(
        self,
        ray_backend: Any,
        packs: list[list[Trial]],
        items: dict[str, dict],
        ledger: Ledger,
        label: str,
    ) -> None:
        ray_backend.run_packs(
            [[items[t.trial_key] for t in p] for p in packs],
            trainable=self.trainable,
            storage=self.storage,
            name=f"{label}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            resources={"cpu": self.spec.resources.cpu, "gpu": self.spec.resources.gpu},
            workers=self.spec.resources.workers,
            max_concurrent=self.slots,
            retries=self.spec.retries,
            invocation=self.invocation,
            on_events=ledger.book,
            on_pack_error=lambda i, msg: ledger.fail_pack([t.trial_key for t in packs[i]], msg),
            on_tick=lambda running_packs: ledger.tick(),
            verbose=self.verbose,
        )
