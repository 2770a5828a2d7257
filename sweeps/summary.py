"""What one `granularity run` did: the `RunSummary` and the text it prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts import PRETRAIN_REUSED, SCRATCH
from sweeps.ledger.ledger import Ledger
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
    rounds: str = ""  # adaptive replicates: what the rounds settled (sweeps/rounds.py)

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
        if self.rounds:
            lines.append(self.rounds)
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
    ledgers: Ledger | Sequence[Ledger],
    *,
    synced: int,
    tuned: dict[Any, Any],
    slots: int,
    pending_sync: int,
    wall_s: float,
    rounds: Any = None,
) -> RunSummary:
    """The summary of a run from its plan and the Ledger(s) of its trials (one per round).

    `rounds` (a sweeps.rounds.Rounds) makes "planned" the trials the adaptive
    design used, not every seed up to `max`, and adds its line to the text.
    """
    recs = [ledgers] if isinstance(ledgers, Ledger) else list(ledgers)
    finished_now = [k for r in recs for k in r.finished_now]
    executed = sum(
        1
        for r in recs
        for key in r.finished_now
        if r.results[key].get(PRETRAIN_REUSED, 0.0) < 0.5
        and r.expected[key]["meta"]["params"].get("hierarchy_kind") != SCRATCH
    )
    failures = {k: v for r in recs for k, v in r.failures.items()}
    scheduled = sum(r.scheduled for r in recs)
    planned = rounds.trials_used if rounds is not None else len(plan.trials)
    return RunSummary(
        planned=planned,
        skipped=planned - scheduled,
        ran=scheduled,
        finished=len(finished_now),
        failed=failures,
        synced=synced,
        pretrainings_planned=plan.num_pretrainings(),
        pretrainings_executed=executed,
        packs=sum(r.packs for r in recs),
        wall_s=wall_s,
        trial_wall_s=sum(sum(r.wall_s.values()) for r in recs),
        slots=slots,
        tuned={k if isinstance(k, str) else "/".join(map(str, k)): v for k, v in tuned.items()},
        not_run=scheduled - len(finished_now) - len(failures),
        pending_sync=pending_sync,
        rounds=rounds.text() if rounds is not None else "",
    )
