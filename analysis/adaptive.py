"""Adaptive replicates in the report: the design's outcomes, recomputed from the trial table.

The driver (sweeps/rounds.py) decided each round with `sequential.evaluate`
on its result files; this module runs the same function on the MLflow trial
table, so the report states per comparison and per cell how many seeds ran
and why it stopped, with the intervals valid under that optional stopping.
"""

from __future__ import annotations

import json

import pandas as pd

from contracts import REPLICATES
from racing import evaluate
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
    # Seeds in the order the rounds added them (a look takes whole rounds, so order inside one
    # round does not matter); seeds that never ran pad the list with values no trial has.
    rounds = pd.to_numeric(df["round"], errors="coerce") if "round" in df else 0
    by_round = df.assign(r=rounds).fillna({"r": 0})
    seeds = [int(s) for s in by_round.sort_values(["r", "seed"])["seed"].drop_duplicates()]
    seeds += [min(seeds, default=0) - 1 - i for i in range(max(0, design.max - len(seeds)))]
    target = (
        str(df["target"].dropna().iloc[0])
        if "target" in df and df["target"].notna().any()
        else None
    )
    return evaluate(design, rows, seeds, target=target)


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
