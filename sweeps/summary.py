"""What one `granularity run` did: the `RunSummary` and the text it prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeps.progress import duration
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
