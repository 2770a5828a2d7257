"""What one `granularity run` did: the `RunSummary` and the text it prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts import PRETRAIN_REUSED, SCRATCH
from sweeps.progress import duration
from sweeps.recorder import Recorder
from sweeps.trials import Plan


@dataclass
class RunSummary:
    """What one `granularity run` did."""

    planned: int
    skipped: int
    ran: int
    finished: int
    failed: dict[str, str]
    synced: int
    pretrainings_planned: int
    pretrainings_executed: int
    packs: int
    wall_s: float
    trial_wall_s: float
    slots: int
    tuned: dict[str, Any] = field(default_factory=dict)
    not_run: int = 0
    pending_sync: int = 0  # trials whose MLflow writes failed and are still not synced

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_run

    def text(self, plan: Plan | None = None) -> str:
        lines = [
            f"{self.planned} trials planned: {self.skipped} already done, {self.ran} run now "
            f"({self.finished} finished, {len(self.failed)} failed"
            + (f", {self.not_run} not run" if self.not_run else "")
            + f") in {duration(self.wall_s)}; {self.synced} result(s) synced from storage",
            f"pretrainings: {self.pretrainings_executed} executed "
            f"({self.pretrainings_planned} distinct in the plan); {self.packs} Ray trial(s)",
        ]
        if self.pending_sync:
            lines.append(
                f"MLflow was unreachable: {self.pending_sync} trial result(s) pending sync, kept "
                "in the sweep's storage (results/); run `granularity sync SPEC` (or `run` "
                "again) once the tracking server is back"
            )
        if self.failed:
            by_key = plan.by_key() if plan else {}
            lines.append("failed trials:")
            for key, reason in list(self.failed.items())[:20]:
                trial = by_key.get(key)
                where = trial.run_name if trial else key[:12]
                lines.append(f"  {where}: {reason}")
            if len(self.failed) > 20:
                lines.append(f"  ... and {len(self.failed) - 20} more (granularity status)")
        return "\n".join(lines)


def summarise(
    plan: Plan,
    recorder: Recorder,
    *,
    synced: int,
    tuned: dict[Any, Any],
    slots: int,
    pending_sync: int,
    wall_s: float,
) -> RunSummary:
    """The summary of a run from its plan and the Recorder of its trials."""
    executed = sum(
        1
        for key in recorder.finished_now
        if recorder.results[key].get(PRETRAIN_REUSED, 0.0) < 0.5
        and recorder.items[key]["meta"]["params"]["hierarchy"] != SCRATCH
    )
    finished = len(recorder.finished_now)
    return RunSummary(
        planned=len(plan.trials),
        skipped=len(plan.trials) - recorder.scheduled,
        ran=recorder.scheduled,
        finished=finished,
        failed=dict(recorder.failures),
        synced=synced,
        pretrainings_planned=plan.num_pretrainings(),
        pretrainings_executed=executed,
        packs=recorder.packs,
        wall_s=wall_s,
        trial_wall_s=sum(recorder.wall_s.values()),
        slots=slots,
        tuned={k if isinstance(k, str) else "/".join(map(str, k)): v for k, v in tuned.items()},
        not_run=recorder.scheduled - finished - len(recorder.failures),
        pending_sync=pending_sync,
    )
