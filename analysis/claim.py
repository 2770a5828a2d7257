"""The paper's claim as the paper states it: finer-than-target levels against the target level.

"Some level finer than the target beats the target, and the finest level is
worse than that level." Per (hierarchy kind, data fraction, backbone), all
paired by seed against the target-level arm (``BaselineGain``'s target level):

- ``finer vs target``: every level with more classes than the target; ``gain =
  error(target) - error(level)``; one family per curve.
- ``finer vs finest``: every finer level other than the finest; ``gain =
  error(finest) - error(level)`` (positive: the finest level is worse); one family.
- ``coarser vs target``: the coarse-to-target part, its own family and its own
  row in the report (not evidence for the paper's claim).

p-values are multiplicity-adjusted within each family (statsmodels) and every
interval is the one that agrees with its adjusted p (``estimators.adjust_table``).
The claim holds for a curve when some level l beats the target and the finest
level is worse than that same l, both adjusted at ``alpha``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.estimators import BaselineGain, adjust_table, prepare_trials, summarise_seeds
from analysis.trial_table import pretrained_arms

ROLES = ("finer vs target", "finer vs finest", "coarser vs target")
KEYS = ["hierarchy", "data_fraction", "backbone"]
LEVEL_KEYS = ["level", "level_name", "num_classes"]

VERDICT_SUPPORTED = "supported"
VERDICT_PARTLY = "partly supported"
VERDICT_NOT = "not supported"
VERDICT_CONTRADICTED = "contradicted"


class PaperClaim:
    """Tests the paper's claim per curve with adjusted, verdict-consistent intervals.

    Parameters:
        metric: the error column (lower is better).
        reference_kind: the kind whose target level is the baseline (and whose
            levels the headline verdict reads).
        exclude: kinds that are not curves, besides the scratch arms (never curves).
        adjust: multiplicity correction within each family ("holm", "bonferroni", "none").
        alpha: significance level.

    Attributes after ``fit``:
        contrasts_: one row per (hierarchy, data_fraction, backbone, role, level):
            ``reference_classes``, ``level``, ``level_name``, ``num_classes``, ``n``,
            ``gain`` (reference error - level error: positive, the level is better),
            ``sd``, ``ci_low``/``ci_high`` (the adjusted interval, ``ci_label`` says
            which), ``ci_low_unadjusted``/``ci_high_unadjusted``, ``pvalue``,
            ``p_adj``, ``family_size``, ``significant`` (``p_adj < alpha``).
        results_: one row per (hierarchy, data_fraction, backbone): ``target_classes``,
            ``n_finer``, ``best_finer_classes`` (largest gain over the target),
            ``finer_beats_target`` (some finer level significantly better),
            ``finer_worse_count`` (finer levels significantly worse),
            ``finest_worse`` (the finest level is significantly worse than a finer
            level that beats the target), ``claim_level_classes`` (that level),
            ``coarser_worse_count`` (coarser levels significantly worse than the
            target), ``verdict`` and ``note``.
        target_level_: how the target level was found (a sentence).
        target_classes_: its class count (NaN when not found).
    """

    def __init__(
        self,
        *,
        metric: str = "target_error",
        reference_kind: str = "manual",
        exclude: tuple[str, ...] = (),
        adjust: str = "holm",
        alpha: float = 0.05,
    ) -> None:
        self.metric = metric
        self.reference_kind = reference_kind
        self.exclude = tuple(exclude)
        self.adjust = adjust
        self.alpha = alpha

    def fit(self, df: pd.DataFrame) -> PaperClaim:
        """Per-seed paired contrasts, adjusted per family, and a verdict per curve."""
        data, self.n_dropped_ = prepare_trials(df, self.metric, ("backbone", "data_fraction"))
        finder = BaselineGain(metric=self.metric, reference_kind=self.reference_kind)
        target, self.target_level_ = finder.target_level_rows(data)
        self.target_classes_ = float(target["num_classes"].median()) if len(target) else math.nan
        if target.empty:
            self.contrasts_, self.results_ = pd.DataFrame(), pd.DataFrame()
            return self
        pair = ["data_fraction", "backbone", "seed"]
        base = target.groupby(pair)[self.metric].mean().rename("target_err")
        arms = pretrained_arms(data, self.exclude)
        present = [c for c in LEVEL_KEYS if c in arms]
        cells = arms.groupby([*KEYS, *present, "seed"], dropna=False)[self.metric].mean()
        cells = cells.rename("err").reset_index().join(base, on=pair, how="inner")
        parts = [self._versus_target(cells), self._versus_finest(cells)]
        table = pd.concat([p for p in parts if len(p)], ignore_index=True)
        if table.empty:
            self.contrasts_, self.results_ = table, pd.DataFrame()
            return self
        table = adjust_table(table, [*KEYS, "role"], self.alpha, self.adjust, value="gain")
        table["significant"] = table["p_adj"] < self.alpha
        order = [*KEYS, "role", "reference_classes", *present, "n", "gain", "sd", "ci_low"]
        order += ["ci_high", "ci_label", "ci_low_unadjusted", "ci_high_unadjusted", "pvalue"]
        order += ["p_adj", "family_size", "significant"]
        self.contrasts_ = table[order].sort_values([*KEYS, "role", "num_classes"])
        self.contrasts_ = self.contrasts_.reset_index(drop=True)
        self.results_ = pd.DataFrame(
            [self._judge(key, g) for key, g in self.contrasts_.groupby(KEYS, sort=True)]
        )
        return self

    def _summary(self, per_seed: pd.DataFrame, role: str, reference: pd.Series) -> pd.DataFrame:
        keys = [*KEYS, *[c for c in LEVEL_KEYS if c in per_seed]]
        out = summarise_seeds(per_seed, keys, "gain", self.alpha).rename(columns={"mean": "gain"})
        out["role"] = role
        out["reference_classes"] = reference.reindex(pd.MultiIndex.from_frame(out[KEYS])).to_numpy()
        return out

    def _versus_target(self, cells: pd.DataFrame) -> pd.DataFrame:
        k = self.target_classes_
        side = np.where(
            cells["num_classes"] > k, ROLES[0], np.where(cells["num_classes"] < k, ROLES[2], "")
        )
        cells = cells.assign(gain=cells["target_err"] - cells["err"], side=side)
        ref = pd.Series(k, index=pd.MultiIndex.from_frame(cells[KEYS].drop_duplicates()))
        parts = [
            self._summary(cells[cells["side"] == role].drop(columns="side"), role, ref)
            for role in (ROLES[0], ROLES[2])
            if (cells["side"] == role).any()
        ]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def _versus_finest(self, cells: pd.DataFrame) -> pd.DataFrame:
        finer = cells[cells["num_classes"] > self.target_classes_]
        if finer.empty:
            return pd.DataFrame()
        top = finer.groupby(KEYS)["num_classes"].transform("max")
        finest = finer[finer["num_classes"] == top]
        finest_err = finest.groupby([*KEYS, "seed"])["err"].mean().rename("finest_err")
        others = finer[finer["num_classes"] < top].join(finest_err, on=[*KEYS, "seed"], how="inner")
        if others.empty:
            return pd.DataFrame()
        others = others.assign(gain=others["finest_err"] - others["err"])
        ref = finer.assign(top=top).groupby(KEYS)["top"].max()
        return self._summary(others, ROLES[1], ref)

    def _judge(self, key: tuple, g: pd.DataFrame) -> dict:
        row = dict(zip(KEYS, key, strict=True))
        finer = g[g["role"] == ROLES[0]]
        versus_finest = g[g["role"] == ROLES[1]]
        coarser = g[g["role"] == ROLES[2]]
        wins = finer[finer["significant"] & (finer["gain"] > 0)]
        losses = finer[finer["significant"] & (finer["gain"] < 0)]
        upturn = versus_finest[versus_finest["significant"] & (versus_finest["gain"] > 0)]
        both = wins[wins["num_classes"].isin(upturn["num_classes"])]
        best = finer.loc[finer["gain"].idxmax()] if len(finer) else None
        row.update(
            target_classes=self.target_classes_,
            n_finer=len(finer),
            best_finer_classes=best["num_classes"] if best is not None else math.nan,
            finer_beats_target=bool(len(wins)),
            finer_worse_count=len(losses),
            finest_worse=bool(len(both)),
            claim_level_classes=both.loc[both["gain"].idxmax(), "num_classes"]
            if len(both)
            else math.nan,
            coarser_worse_count=int((coarser["significant"] & (coarser["gain"] < 0)).sum()),
        )
        if finer.empty:
            row["verdict"], row["note"] = VERDICT_NOT, "no level finer than the target"
        elif len(both):
            row["verdict"] = VERDICT_SUPPORTED
            row["note"] = "a finer level beats the target and the finest level is worse than it"
        elif len(wins):
            row["verdict"] = VERDICT_PARTLY
            row["note"] = "a finer level beats the target; the finest level is not worse than it"
        elif len(losses) == len(finer):
            row["verdict"] = VERDICT_CONTRADICTED
            row["note"] = "every finer level is worse than the target"
        else:
            row["verdict"] = VERDICT_NOT
            row["note"] = "no finer level beats the target"
        return row
