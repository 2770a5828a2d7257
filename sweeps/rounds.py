"""Adaptive replicates on the driver: rounds of seeds until `sequential.evaluate` has nothing open.

Each round: read the sweep's own result files (`<storage>/results/`), ask
`racing.evaluate` (`sequential.evaluate` plus the `best_level` races) which (cell, seed) trials the current look still needs,
run just those through the Executor, repeat. The decisions are a pure
function of the results, so a driver killed mid-round replays them on the
next `run` and continues with the trials that round still lacks (finished
ones are skipped as always); raising `max` extends a finished sweep.

A trial that fails in this invocation counts as done (a NaN, left out of the
intervals) so a round never loops on it; the next `run` retries it, as for a
fixed sweep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import ROUND, TARGET_ERROR
from racing import RULE, evaluate, race_summary
from sequential import Design, State
from sweeps.executor import Executor
from sweeps.ledger.ledger import Ledger
from sweeps.ledger.records import read_results
from sweeps.trials import Plan, Trial


def round_tags(plan: Plan, design: Design) -> dict[str, dict[str, str]]:
    """trial_key -> {ROUND: "1" ...}: the round whose look first includes the trial's seed."""
    index = {s: i for i, s in enumerate(plan.spec.seed_list())}
    return {
        t.trial_key: {ROUND: str(design.round_of(index[t.config["seed"]]) + 1)} for t in plan.trials
    }


def rows_of(
    trials: Sequence[Trial], results: Mapping[str, dict[str, Any]], failed_now: set[str]
) -> list[dict[str, Any]]:
    """`sequential.evaluate`'s rows: one per planned trial, `value` None until it has run."""
    rows = []
    for t in trials:
        c = t.config
        value = None
        if t.trial_key in results:
            value = float(results[t.trial_key]["result"].get(TARGET_ERROR, math.nan))
        elif t.trial_key in failed_now:
            value = math.nan
        rows.append(
            {
                "hierarchy": c["hierarchy"],
                "level_name": t.cell.level_name,
                "data_fraction": c["data_fraction"],
                "backbone": c["backbone"],
                "num_classes": t.num_classes,
                "label_fn": t.label_fn,
                "seed": c["seed"],
                "value": value,
            }
        )
    return rows


@dataclass
class Rounds:
    """What the rounds of one `run` did: the Executor's ledgers and the final state."""

    ledgers: list[Ledger]
    state: State
    trials_used: int  # trials the design needed (run now or before)
    trials_fixed: int  # trials of the fixed design: every cell at max seeds

    def text(self) -> str:
        s = self.state
        comparisons = [o for o in s.outcomes if o.rule != RULE]  # a race's lanes: race_summary
        closed = [o for o in comparisons if o.status != "open"]
        unsettled = [o for o in closed if o.status == "max"]
        open_ = [o for o in comparisons if o.status == "open"]
        parts = [f"adaptive replicates ({s.design.method()}): looks at {s.design.looks()} seeds"]
        if comparisons:
            parts.append(
                f"{len(closed) - len(unsettled)} of {len(comparisons)} comparisons settled, "
                f"{len(unsettled)} not settled within max={s.design.max}"
                + (f", {len(open_)} still open" if open_ else "")
            )
        if s.races:
            parts.append(race_summary(s.races))
        if s.todo:
            parts.append(f"look {s.look + 1} incomplete: run again")
        used = f"{self.trials_used} trials used"
        if s.races:
            saved = self.trials_fixed - self.trials_used
            used += (
                f" of the fixed design's {self.trials_fixed} "
                f"({saved} saved, {saved / self.trials_fixed:.0%})"
            )
        return "; ".join([*parts, used])


def run_rounds(
    plan: Plan,
    design: Design,
    executor: Executor,
    metas: dict[str, dict],
    storage: Path,
    label: str,
    pack: str | int,
) -> Rounds:
    """Run round after round until every rule of `design` has stopped (or a round runs nothing new)."""
    seeds = plan.spec.seed_list()
    by_cell_seed = {(t.cell, t.config["seed"]): t for t in plan.trials}
    ledgers: list[Ledger] = []
    attempted: set[str] = set()
    while True:
        results = read_results(storage)
        failed_now = attempted - set(results)
        state = evaluate(
            design, rows_of(plan.trials, results, failed_now), seeds, target=plan.target
        )
        todo = [by_cell_seed[cs] for cs in state.todo]
        todo = [t for t in todo if t.trial_key not in attempted]
        if not todo:
            break
        ledgers.append(executor(todo, metas, f"{label} round {state.look + 1}", pack))
        attempted |= {t.trial_key for t in todo}
    used = sum(1 for t in plan.trials if t.trial_key in results or t.trial_key in attempted)
    return Rounds(ledgers, state, used, len(plan.trials))
