"""Adaptive replicates in the report: the design's outcomes, recomputed from the trial table.

The driver (sweeps/rounds.py) decided each round with `sequential.evaluate`
on its result files; this module runs the same function on the MLflow trial
table, so the report states per comparison and per cell how many seeds ran
and why it stopped, with the intervals valid under that optional stopping.
"""

from __future__ import annotations

import json

import pandas as pd

from contracts import REPLICATES, Cell
from racing import drop_reason, evaluate, group_label, level_name, verdict
from sequential import Design, State


def design_of(run_tags: dict[str, str]) -> Design | None:
    """The adaptive design a sweep's parent run carries (tag `granularity.replicates`), if any."""
    text = run_tags.get(REPLICATES)
    return Design.from_dict(json.loads(text)) if text else None


def adaptive_state(df: pd.DataFrame, design: Design, metric: str = "target_error") -> State:
    """`racing.evaluate` (`sequential.evaluate` and any races) on a trial table (finished trials; missing ones count as not run)."""
    cols = [
        "hierarchy",
        "level_name",
        "data_fraction",
        "backbone",
        "num_classes",
        "label_fn",
        "seed",
    ]
    rows = df[cols].assign(value=df[metric].astype(float)).to_dict("records")
    target = (
        str(df["target"].dropna().iloc[0])
        if "target" in df and df["target"].notna().any()
        else None
    )
    return evaluate(design, rows, design_seeds(df, design), target=target)


def design_seeds(df: pd.DataFrame, design: Design) -> list[int]:
    """The design's seeds in the order the rounds added them, padded to `max`.

    A look takes whole rounds, so order inside one round does not matter; seeds
    that never ran pad the list with values no trial has.
    """
    rounds = pd.to_numeric(df["round"], errors="coerce") if "round" in df else 0
    by_round = df.assign(r=rounds).fillna({"r": 0})
    seeds = [int(s) for s in by_round.sort_values(["r", "seed"])["seed"].drop_duplicates()]
    return seeds + [min(seeds, default=0) - 1 - i for i in range(max(0, design.max - len(seeds)))]


def outcome_table(state: State) -> pd.DataFrame:
    """One row per comparison (or half-width rule): rule, name, seeds, status, why it stopped."""
    return pd.DataFrame(
        [
            {
                "rule": o.rule,
                "comparison": o.name,
                "seeds": o.n,
                "status": o.status,
                "why": o.reason,
            }
            for o in state.outcomes
        ],
        columns=["rule", "comparison", "seeds", "status", "why"],
    )


def cell_seeds_table(state: State) -> pd.DataFrame:
    """One row per cell: the seeds the design gave it and the comparison that needed the most."""
    rows = [
        {
            "hierarchy": c[0],
            "level_name": c[1],
            "data_fraction": c[2],
            "backbone": c[3],
            "seeds run": state.seeds_run.get(c, 0),
            "seeds needed": n,
            "why": why,
        }
        for c, (n, why) in state.cell_seeds().items()
    ]
    return pd.DataFrame(rows)


def race_table(
    state: State, df: pd.DataFrame, design: Design, metric: str = "target_error"
) -> pd.DataFrame:
    """One row per best-level race: levels dropped after which round, the winner, the answer."""
    values = {
        (Cell.of(r), int(r["seed"])): float(r[metric])
        for r in df.to_dict("records")
        if pd.notna(r[metric])
    }
    seeds = design_seeds(df, design)
    rows = []
    for race in state.races:
        dropped = [
            f"{ln.level.level_name} (round {ln.look + 1}, {drop_reason(ln)})"
            for ln in sorted(race.lanes, key=lambda x: x.look)
            if drop_reason(ln)
        ]
        ci = race.winner_interval
        rows.append(
            {
                "group": group_label(race.group),
                "dropped (after round)": "; ".join(dropped) or "none",
                # An undecided race names its lowest mean, not a winner.
                "winner": (
                    level_name(race.winner)
                    if race.status == "decided"
                    else f"(lowest mean {level_name(race.winner)})"
                    if race.winner is not None
                    else ""
                ),
                "winner error [interval]": (
                    f"{ci.mean:.4f} [{ci.low:.4f}, {ci.high:.4f}]" if ci is not None else ""
                ),
                "seeds run": ", ".join(f"{ln.level.level_name} {ln.seeds}" for ln in race.lanes),
                "answer": verdict(race, values, seeds),
            }
        )
    return pd.DataFrame(rows)
