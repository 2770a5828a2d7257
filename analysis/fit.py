"""Fitting every estimator on a sweep's trial table: ``analyze`` and the ``Analysis`` it returns."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis import estimators as est
from analysis.alignment_dial import AlignmentDial, has_dial
from analysis.claim import PaperClaim
from analysis.diagnostics import pretraining_table
from analysis.formatting import DATA_FRACTION
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
    pretraining: pd.DataFrame | None = None  # train / validation error at the end of pretraining
    claim: PaperClaim | None = None  # the paper's claim as stated (analysis.claim)
    # The size axis' name in the report: a crossed dataset option's (analysis.variants) or this.
    size_label: str = DATA_FRACTION
    dial: AlignmentDial | None = None  # alignment dialled by perturbed arms (E3)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table of the report by name, as DataFrames (for a notebook)."""
        found = {
            "ucurve": self.ucurve.results_,
            "levels": self.ucurve.curve_,
            "argmin": self.ucurve.argmin_,
            "gain": self.gain.table_,
            "size_optima": self.size.optima_,
            "size_trend": self.size.trend_,
            "size_heatmap": self.size.heatmap_,
            "size_slopes": self.size.slopes_,
            "size_argmin": self.size.argmin_,
            "kinds_pooled": self.comparison.pooled_,
            "kinds_cells": self.comparison.cells_,
            "kinds_interaction": self.comparison.interaction_,
            "alignment": self.alignment.results_,
            "alignment_points": self.alignment.points_,
            "alignment_seed_model": self.alignment.seed_model_,
            "alignment_dial": self.dial.cells_ if self.dial is not None else None,
            "alignment_dose": self.dial.dose_ if self.dial is not None else None,
            "alignment_dial_interaction": self.dial.interaction_ if self.dial is not None else None,
            "claim": self.claim.results_ if self.claim is not None else None,
            "claim_contrasts": self.claim.contrasts_ if self.claim is not None else None,
            "hard": self.hard,
            "easy_hard": self.easy_hard,
            "pretraining": self.pretraining,
        }
        return {name: table for name, table in found.items() if table is not None}


def analyze(
    df: pd.DataFrame,
    *,
    metric: str = "target_error",
    n_boot: int = 2000,
    status_counts: dict[str, int] | None = None,
    failures: pd.Series | None = None,
    random_state: int = 0,
    hard_examples: HardMode = "auto",
    size_label: str = DATA_FRACTION,
) -> Analysis:
    """Fit all estimators on a trial table (finished trials).

    `hard_examples`: where `target_error_hard` comes from ("dataset": the
    trial's own hard split; "reference": the other seeds' scratch models'
    hardest 20%, analysis.hard_examples; "target_level": the biased old
    definition, on request only; "auto": dataset, else reference).
    `size_label`: the size axis' name (a crossed dataset option's, analysis.variants), which
    the verdicts and the size table's crossover name.
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
        size=est.SizeGranularity(
            n_boot=n_boot, random_state=random_state, size_label=size_label, **kw
        ).fit(df),
        comparison=est.HierarchyComparison(**kw).fit(df),
        alignment=est.AlignmentStudy(n_boot=n_boot, random_state=random_state, **kw).fit(df),
        hard=est.hard_example_verdict(df, alpha=ALPHA),
        metric=metric,
        failures=failures if failures is not None else pd.Series(dtype=int),
        hard_note=hard_note,
        easy_hard=easy_hard_table(df),
        pretraining=pretraining_table(df, alpha=ALPHA),
        claim=PaperClaim(**kw).fit(df),
        size_label=size_label,
        dial=AlignmentDial(**kw).fit(df) if has_dial(df) else None,
    )
