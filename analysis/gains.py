"""Paired gains of every arm over the scratch and target-level baselines (BaselineGain),
the target level it defines, and the hard-example verdict built on it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import stats
from analysis.trial_table import (
    PAIR_KEYS,
    adjust_table,
    cell_means,
    is_scratch,
    prepare_trials,
    pretrained_arms,
    scratch_labels,
    summarise_seeds,
)


class BaselineGain:
    """Paired (same seed, fraction, backbone) gain of every arm over two baselines.

    ``gain = baseline error - arm error`` (positive: the arm's pretraining helps).
    Baselines:
      - each scratch arm (trained on target labels only; ``trial_table.is_scratch``), named
        by its label: ``scratch`` and, where the sweep holds more, e.g. ``scratch_plain``
        (the pretraining's budget beside the compute-matched one).
      - ``target_level``: pretraining on the target's own labels, i.e. rows of
        ``reference_kind`` (the manual hierarchy) whose ``level_name`` (or ``level``)
        equals the trial's ``target`` param; when no such row exists, the
        reference level whose ``num_classes`` equals the scratch arms' (the
        target's class count).

    Attributes after ``fit``:
        table_: one row per (baseline, hierarchy, level, data_fraction, backbone):
            ``n`` pairs, ``gain`` with ``ci_low``/``ci_high`` (t interval over
            seeds), ``pvalue`` (paired t), ``baseline_error``, ``relative_gain``
            (gain / baseline error) and a ``note``.
        target_level_: how the target level was identified (a sentence).
    """

    def __init__(
        self,
        *,
        metric: str = "target_error",
        reference_kind: str = "manual",
        target_column: str = "target",
        alpha: float = 0.05,
    ) -> None:
        self.metric = metric
        self.reference_kind = reference_kind
        self.target_column = target_column
        self.alpha = alpha

    def target_level_rows(self, data: pd.DataFrame) -> tuple[pd.DataFrame, str]:
        """Rows of the target-level arm and a sentence saying how they were found."""
        ref = data[data["hierarchy"] == self.reference_kind]
        if ref.empty:
            return ref, f"no {self.reference_kind} arm: target-level baseline not available"
        if self.target_column in data and data[self.target_column].notna().any():
            target = str(data[self.target_column].dropna().iloc[0])
            by_name = ref["level_name"].astype(str) == target if "level_name" in ref else False
            by_index = ref["level"].astype("Int64").astype(str) == target
            rows = ref[by_name | by_index]
            if not rows.empty:
                return (
                    rows,
                    f"{self.reference_kind} level named by the `{self.target_column}` param ({target})",
                )
        scratch = data[is_scratch(data)]
        if not scratch.empty:
            k = scratch["num_classes"].median()
            rows = ref[ref["num_classes"] == k]
            if not rows.empty:
                return rows, f"{self.reference_kind} level with the target's class count ({k:g})"
        return ref.iloc[0:0], "target level not found in the sweep"

    def fit(self, df: pd.DataFrame) -> BaselineGain:
        """Compute paired gains of every arm over scratch and over the target level."""
        data, self.n_dropped_ = prepare_trials(df, self.metric, ("backbone", "data_fraction"))
        keys = [c for c in PAIR_KEYS if c in data]
        baselines = {label: data[data["hierarchy"] == label] for label in scratch_labels(data)}
        baselines["target_level"], self.target_level_ = self.target_level_rows(data)
        arms = pretrained_arms(data)
        arm_keys = ["hierarchy", "level", *[c for c in ("level_name",) if c in arms]]
        rows = []
        for name, base in baselines.items():
            if base.empty:
                continue
            base_mean = cell_means(base, self.metric, keys).rename("baseline")
            merged = arms.join(base_mean, on=keys, how="inner")
            merged["gain"] = merged["baseline"] - merged[self.metric]
            cell_keys = [*arm_keys, "data_fraction", "backbone"]
            per_seed = merged.groupby([*cell_keys, "seed"], dropna=False)[
                ["gain", "baseline", "num_classes"]
            ].mean()
            table = summarise_seeds(per_seed.reset_index(), cell_keys, "gain", self.alpha)
            extra = per_seed.groupby(cell_keys, dropna=False)[["baseline", "num_classes"]].mean()
            table = table.join(extra, on=cell_keys).rename(
                columns={"mean": "gain", "baseline": "baseline_error"}
            )
            table["relative_gain"] = table["gain"] / table["baseline_error"].replace(0, np.nan)
            table.insert(0, "baseline", name)
            rows.append(table)
        cols = [
            "baseline",
            *arm_keys,
            "data_fraction",
            "backbone",
            "num_classes",
            "n",
            "gain",
            "sd",
            "ci_low",
            "ci_high",
            "pvalue",
            "baseline_error",
            "relative_gain",
            "note",
        ]
        self.table_ = (
            pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)
        )
        return self


def target_classes(df: pd.DataFrame, reference_kind: str = "manual") -> tuple[float, str]:
    """The target level's class count and how it was found (NaN and a reason when it is not).

    The target level is BaselineGain's: the ``reference_kind`` level named by the
    ``target`` param, else the level with the scratch arm's class count.
    """
    rows, how = BaselineGain(reference_kind=reference_kind).target_level_rows(df)
    if rows.empty:
        return math.nan, how
    return float(rows["num_classes"].median()), how


def hard_example_verdict(
    df: pd.DataFrame,
    *,
    metric: str = "target_error_hard",
    reference_kind: str = "manual",
    alpha: float = 0.05,
    adjust: str = "holm",
) -> pd.DataFrame:
    """Finer-than-target levels versus the target level on hard examples (the theory's claim).

    For each level of ``reference_kind`` with more classes than the target level:
    paired advantage ``error(target level) - error(level)`` on ``metric``, ``p_adj``
    (``adjust`` over those levels x sizes; also ``p_holm``) and the interval that agrees
    with it (``ci_label``; the unadjusted one in ``ci_low_unadjusted`` / ``ci_high_unadjusted``).
    Empty when the metric or the target level is absent.
    """
    if metric not in df or df[metric].notna().sum() == 0:
        return pd.DataFrame()
    gain = BaselineGain(metric=metric, reference_kind=reference_kind, alpha=alpha).fit(df)
    t = gain.table_
    if t.empty or "target_level" not in set(t["baseline"]):
        return pd.DataFrame()
    t = t[(t["baseline"] == "target_level") & (t["hierarchy"] == reference_kind)]
    target_k = gain.target_level_rows(df)[0]["num_classes"].median()
    t = t[t["num_classes"] > target_k].reset_index(drop=True)
    if t.empty:
        return t
    t = adjust_table(t, [], alpha, adjust, value="gain")
    t["p_holm"] = t["p_adj"] if adjust == "holm" else stats.holm(t["pvalue"].to_numpy())
    return t
