"""Fitting every estimator on a sweep's trial table: ``analyze`` and the ``Analysis`` it returns."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis import estimators as est
from analysis.hard_examples import HardMode, derive_hard_examples, easy_hard_table
from sequential import Design

ALPHA = 0.05  # the significance level of every test and the coverage 1 - ALPHA of every interval


@dataclass
class Analysis:
    """Every estimator fitted on one sweep's trials."""

    df: pd.DataFrame
    status_counts: dict[str, int]
    ucurve: est.UCurve
    gain: est.BaselineGain
    size: est.SizeGranularity
    comparison: est.HierarchyComparison
    alignment: est.AlignmentStudy
    hard: pd.DataFrame
    metric: str
    failures: pd.Series  # failure reason -> count, over failed trial runs
    hard_note: str = ""  # how hard examples are defined (analysis.hard_examples)
    easy_hard: pd.DataFrame | None = None  # every arm's easy / hard error
    design: Design | None = None  # adaptive replicates (the parent run's `granularity.replicates`)


def analyze(
    df: pd.DataFrame,
    *,
    metric: str = "target_error",
    n_boot: int = 2000,
    status_counts: dict[str, int] | None = None,
    failures: pd.Series | None = None,
    random_state: int = 0,
    hard_examples: HardMode = "auto",
) -> Analysis:
    """Fit all estimators on a trial table (finished trials).

    `hard_examples`: where `target_error_hard` comes from ("dataset": the
    trial's own hard split; "target_level": the mistakes of the other seeds'
    target-level models, analysis.hard_examples; "auto": the first available).
    """
    if df.empty:
        raise ValueError(
            "No finished trial runs to analyse (tag granularity.role=trial, status FINISHED)"
        )
    if metric not in df:
        raise ValueError(
            f"Trials have no metric {metric!r}; metrics present: "
            f"{sorted(c for c in df.columns if '/' in c or c.startswith('target_'))}"
        )
    kw = {"metric": metric, "alpha": ALPHA}
    target_rows, _ = est.BaselineGain(**kw).target_level_rows(df)
    df, hard_note = derive_hard_examples(df, target_rows, mode=hard_examples)
    return Analysis(
        df=df,
        status_counts=status_counts or {"FINISHED": len(df)},
        ucurve=est.UCurve(n_boot=n_boot, random_state=random_state, **kw).fit(df),
        gain=est.BaselineGain(**kw).fit(df),
        size=est.SizeGranularity(n_boot=n_boot, random_state=random_state, **kw).fit(df),
        comparison=est.HierarchyComparison(**kw).fit(df),
        alignment=est.AlignmentStudy(n_boot=n_boot, random_state=random_state, **kw).fit(df),
        hard=est.hard_example_verdict(df, alpha=ALPHA),
        metric=metric,
        failures=failures if failures is not None else pd.Series(dtype=int),
        hard_note=hard_note,
        easy_hard=easy_hard_table(df),
    )
