"""The finetuning protocol x level interaction (E1, ProtocolInteraction): per level at or finer
than the target, the gain over the target-level arm under the linear probe and under full
finetuning from the same checkpoints, their difference paired by replicate unit, and an omnibus
test over the levels.

A sweep crossing ``finetune.mode`` is analysed one mode at a time (analysis.variants); this
estimator reads both modes at once, because the interaction is a within-unit contrast across
them: for unit u (a seed, or a (block, seed) pair) and level l,
``interaction_ul = gain_full_ul - gain_linear_ul`` with
``gain_m_ul = error(target level, m, u) - error(l, m, u)``. Positive: full finetuning widens the
level's advantage over the target level (or narrows its deficit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.gains import BaselineGain
from analysis.trial_table import (
    adjust_table,
    prepare_trials,
    pretrained_arms,
    summarise_seeds,
    within_unit_f_test,
)
from contracts import FINETUNE_MODES

MODE = "finetune.mode"  # the finetuning protocol's MLflow param (analysis.variants)
LINEAR, FULL = FINETUNE_MODES
# The three per-unit quantities, each its own Holm family over the levels of a curve.
VALUES = ("gain_linear", "gain_full", "interaction")
POOLED = "pooled"


def crosses_protocols(df: pd.DataFrame) -> bool:
    """Whether the trials hold both the linear probe and full finetuning of pretrained arms."""
    if MODE not in df:
        return False
    return {LINEAR, FULL} <= set(pretrained_arms(df)[MODE].dropna().astype(str))


class ProtocolInteraction:
    """Gain over the target level under each protocol, and the protocol x level interaction.

    Per stratum (``pooled``: every block, the unit a (block, seed) pair, so every difference
    is within one block; then each block value alone, the unit its seed; without a block one
    stratum ``pooled`` with the seed as the unit), hierarchy kind, data fraction, backbone (and
    ``keys``, further crossed columns) and level with at least as many classes as the target
    level (the target level's own rows left out: their gain is 0 by construction).

    Attributes after ``fit``:
        table_: one row per (stratum, hierarchy, level, data_fraction, backbone, *keys):
            ``level_name``, ``num_classes``, ``n`` (units with both protocols),
            ``error_linear``/``error_full`` (mean error over units), ``gain_linear``,
            ``gain_full`` and ``interaction`` (mean over units), each with ``*_ci_low`` /
            ``*_ci_high`` (t interval over units, Holm-consistent over the levels of one
            curve: excludes 0 exactly when its ``*_p_adj`` < alpha), ``interaction_pvalue``
            (paired t), ``ci_label``.
        omnibus_: one row per (stratum, hierarchy, data_fraction, backbone, *keys): does the
            protocol effect differ between the levels (the target level included, its
            interaction 0)? ``n_levels``, ``n_units``, ``f_stat``, ``df_num``, ``df_den``,
            ``pvalue`` (repeated-measures F, trial_table.within_unit_f_test).
        target_level_: how the target level was found (BaselineGain).
    """

    def __init__(
        self,
        *,
        metric: str = "target_error",
        block: str | None = None,
        keys: Sequence[str] = (),
        alpha: float = 0.05,
        adjust: str = "holm",
    ) -> None:
        self.metric = metric
        self.block = block
        self.keys = tuple(keys)
        self.alpha = alpha
        self.adjust = adjust

    def fit(self, df: pd.DataFrame) -> ProtocolInteraction:
        """Per stratum, the per-unit gains under both protocols and their difference."""
        data, self.n_dropped_ = prepare_trials(df, self.metric, ("backbone", "data_fraction"))
        data = data[data[MODE].astype(str).isin(FINETUNE_MODES)] if MODE in data else data[:0]
        target, self.target_level_ = BaselineGain(metric=self.metric).target_level_rows(data)
        tables, omnibus = [], []
        if len(target):
            target_k = float(target["num_classes"].median())
            arms = pretrained_arms(data)
            arms = arms[(arms["num_classes"] >= target_k) & ~arms.index.isin(target.index)]
            for stratum, unit in self._strata(data):
                here = arms.loc[arms.index.isin(unit.index)]
                per_unit, target_units = self._per_unit(here, target, unit)
                if per_unit.empty:
                    continue
                tables.append(self._summary(per_unit).assign(stratum=stratum))
                omnibus.append(self._omnibus(per_unit, target_units).assign(stratum=stratum))
        self.table_ = self._order(tables, ["level", "level_name", "num_classes"])
        self.omnibus_ = self._order(omnibus, [])
        return self

    def _strata(self, data: pd.DataFrame) -> list[tuple[str, pd.Series]]:
        """(stratum name, the replicate unit of each of its rows)."""
        seed = data["seed"].astype(str)
        if self.block is None:
            return [(POOLED, seed)]
        block = data[self.block].astype(str)
        out = [(POOLED, block + "\x1f" + seed)]
        name = self.block.removeprefix("dataset.")
        for value in sorted(block.unique(), key=_numeric_first):
            out.append((f"{name}={value}", seed[block == value]))
        return out

    def _per_unit(
        self, arms: pd.DataFrame, target: pd.DataFrame, unit: pd.Series
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One row per (curve, level, unit): error and gain under each protocol; and the
        (curve, unit) pairs whose target level has both protocols."""
        cell = ["data_fraction", "backbone", *self.keys, "unit"]
        t = target.loc[target.index.isin(unit.index)].assign(unit=unit)
        base = t.groupby([MODE, *cell])[self.metric].mean().rename("target_err")
        levels = ["hierarchy", "level", *[c for c in ("level_name",) if c in arms]]
        a = arms.assign(unit=unit.loc[arms.index])
        a = a.assign(num_classes=a.groupby(levels)["num_classes"].transform("median"))
        errors = a.groupby([*levels, "num_classes", MODE, *cell], dropna=False)[self.metric].mean()
        errors = errors.rename("error").reset_index().join(base, on=[MODE, *cell], how="inner")
        both = base.unstack(MODE).reindex(columns=[LINEAR, FULL]).dropna()
        target_units = both.index.to_frame(index=False)
        if errors.empty:
            return errors, target_units
        errors["gain"] = errors["target_err"] - errors["error"]
        wide = errors.pivot_table(
            index=[*levels, "num_classes", *cell], columns=MODE, values=["error", "gain"]
        )
        wide.columns = [f"{v}_{m}" for v, m in wide.columns]
        wide = wide.reindex(columns=[f"{v}_{m}" for v in ("error", "gain") for m in (LINEAR, FULL)])
        wide["interaction"] = wide[f"gain_{FULL}"] - wide[f"gain_{LINEAR}"]
        return wide.reset_index(), target_units

    def _summary(self, per_unit: pd.DataFrame) -> pd.DataFrame:
        """Per level: means of the per-unit values, Holm-consistent intervals over levels."""
        levels = ["hierarchy", "level", *[c for c in ("level_name",) if c in per_unit]]
        group = [*levels, "num_classes", "data_fraction", "backbone", *self.keys]
        curve = ["hierarchy", "data_fraction", "backbone", *self.keys]
        out = per_unit.groupby(group, dropna=False)[[f"error_{LINEAR}", f"error_{FULL}"]].mean()
        n = per_unit.dropna(subset=["interaction"]).groupby(group, dropna=False)["unit"].nunique()
        out = out.assign(n=n.reindex(out.index).fillna(0).astype(int)).reset_index()
        for value in VALUES:
            s = summarise_seeds(per_unit, group, value, self.alpha)
            s = adjust_table(s, curve, self.alpha, self.adjust)
            s = s.rename(columns={"mean": value, "ci_low": f"{value}_ci_low"})
            s = s.rename(columns={"ci_high": f"{value}_ci_high", "p_adj": f"{value}_p_adj"})
            s = s.rename(columns={"pvalue": f"{value}_pvalue"})
            keep = [value, f"{value}_ci_low", f"{value}_ci_high", f"{value}_pvalue"]
            keep += [f"{value}_p_adj"] + (["ci_label"] if value == VALUES[-1] else [])
            out = out.merge(s[[*group, *keep]], on=group, how="left")
        return out

    def _omnibus(self, per_unit: pd.DataFrame, target_units: pd.DataFrame) -> pd.DataFrame:
        """Per curve: the repeated-measures F of level on the per-unit interaction, the target
        level included with interaction 0 for every unit that has both protocols there."""
        cell = ["data_fraction", "backbone", *self.keys]
        rows = []
        for key, g in per_unit.groupby(["hierarchy", *cell], dropna=False, sort=True):
            g = g.dropna(subset=["interaction"])
            units = target_units.merge(g[[*cell, "unit"]].drop_duplicates(), on=[*cell, "unit"])
            zero = units.assign(level="target", interaction=0.0)
            both = pd.concat([g[["level", "unit", "interaction"]], zero], ignore_index=True)
            row = dict(zip(["hierarchy", *cell], key, strict=True))
            row.update(n_levels=both["level"].nunique(), n_units=both["unit"].nunique())
            row.update(within_unit_f_test(both, "interaction", "level", "unit"))
            rows.append(row)
        return pd.DataFrame(rows)

    def _order(self, parts: list[pd.DataFrame], level: list[str]) -> pd.DataFrame:
        """Concatenated strata, the stratum first, pooled before the blocks, curves in order."""
        if not parts:
            return pd.DataFrame()
        out = pd.concat(parts, ignore_index=True)
        first = ["stratum", "hierarchy", "data_fraction", "backbone", *self.keys]
        out = out[[*first, *[c for c in out.columns if c not in first]]]
        strata = list(dict.fromkeys(out["stratum"]))
        out["_s"] = out["stratum"].map({s: i for i, s in enumerate(strata)})
        sort = ["_s", "hierarchy", "data_fraction", "backbone", *self.keys]
        sort += [c for c in ("num_classes", "level") if c in level]
        return out.sort_values(sort, kind="stable").drop(columns="_s").reset_index(drop=True)


def _numeric_first(value: str) -> tuple[int, float, str]:
    """Sort key: numbers by value ("2" before "10"), then other strings by name."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, np.inf, value)
