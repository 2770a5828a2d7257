"""Alignment dialled at fixed granularity (E3, AlignmentDial): perturbed arms at several p per
level, their realised alignment, gain over the target-level arm, the dose-response slope of gain
on alignment with the seed as the unit, the alignment at which the gain crosses 0, and whether
the slope differs between levels.

A perturbed arm (kind ``perturbed``, label ``<base>_p<p>``, param ``hierarchy_p``) regroups the
coherent leaf classes with probability p, so at one level (one class count) alignment with the
target is dialled while granularity stays fixed. Each seed draws its own perturbation, so each
seed has its own realised alignment per (level, p): the per-seed regression of gain on that
alignment is the unit of the dose-response (AlignmentStudy's correlations over label functions
are not).
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.gains import BaselineGain
from analysis.trial_table import adjust_table, prepare_trials, pretrained_arms, summarise_seeds
from contracts import HIERARCHY_P

AMI = "align/ami"
COND_ENTROPY = "align/cond_entropy"  # H(target | pretraining labels)
MIN_P = 3  # dial values below which there is no dose-response to fit (nor a report section)
LEVEL_KEYS = ["family", "level", "level_name", "num_classes"]
CURVE = ["family", "data_fraction", "backbone"]
_LABEL_P = re.compile(r"^(?P<base>.+)_p(?P<p>[0-9.eE+-]+)$")


def dial_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The perturbed arms' rows with ``family`` (the label without ``_p<p>``) and ``p`` (from
    ``hierarchy_p``, else the label); an empty frame when the sweep has none."""
    arms = pretrained_arms(df)
    parsed = arms["hierarchy"].astype(str).str.extract(_LABEL_P)
    p = pd.to_numeric(arms[HIERARCHY_P], errors="coerce") if HIERARCHY_P in arms else None
    p = (
        pd.to_numeric(parsed["p"], errors="coerce")
        if p is None
        else p.fillna(pd.to_numeric(parsed["p"], errors="coerce"))
    )
    if "hierarchy_kind" in arms:  # a label that merely ends in _p<number> is not a dial
        p = p.where(arms["hierarchy_kind"].astype(str).eq("perturbed"))
    keep = p.notna()
    return arms[keep].assign(family=parsed.loc[keep, "base"].fillna(arms["hierarchy"]), p=p[keep])


def has_dial(df: pd.DataFrame) -> bool:
    """Whether some perturbed family has arms at ``MIN_P`` or more values of p."""
    rows = dial_rows(df)
    return bool(len(rows)) and int(rows.groupby("family")["p"].nunique().max()) >= MIN_P


class AlignmentDial:
    """Gain over the target-level arm against realised alignment, per perturbed level.

    Attributes after ``fit`` (empty frames when the sweep has no perturbed family at
    ``MIN_P`` values of p or no target-level arm):
        cells_: one row per (family, level, p, data_fraction, backbone): ``n`` seeds, realised
            ``ami`` and ``cond_entropy`` (H(target | pretraining), mean over seeds),
            ``gain`` (target-level error - arm error, paired by seed) with ``ci_low`` /
            ``ci_high`` Holm-consistent over the (level, p) cells of one curve (``ci_label``,
            ``p_adj``).
        dose_: one row per (family, level, data_fraction, backbone) with ``MIN_P`` values
            of p: ``n`` seeds, ``n_p``, ``slope`` (mean over seeds of the per-seed OLS slope of
            gain on ``x``) with ``ci_low``/``ci_high`` (t over seeds, Holm-consistent over the
            levels: ``ci_label``, ``p_adj``), ``x_low``/``x_high`` (observed range of the cell
            means of ``x``), ``threshold`` (the ``x`` where the mean fitted line crosses gain
            0; inverse prediction) with ``threshold_ci_low``/``threshold_ci_high`` (Fieller's
            interval with the seed as the unit; NaN when unbounded) and ``crossing`` (a
            phrase: "at AMI 0.42" or "outside the observed range (...)", and whether the
            interval is unbounded).
        interaction_: one row per pair of levels of a curve (coarser ``level_a``, finer
            ``level_b``): ``n`` seeds with both slopes, ``slope_a``, ``slope_b``,
            ``difference`` (slope_b - slope_a, mean of the per-seed differences) with
            ``ci_low``/``ci_high`` (t over seeds, Holm-consistent over the pairs), ``pvalue``,
            ``p_adj``.
        x_: the alignment metric on the x axis (``align/ami``, else the first logged of
            nmi, purity).
    """

    def __init__(
        self,
        *,
        metric: str = "target_error",
        x: str = AMI,
        alpha: float = 0.05,
    ) -> None:
        self.metric = metric
        self.x = x
        self.alpha = alpha

    def fit(self, df: pd.DataFrame) -> AlignmentDial:
        """Per seed, the gain of every perturbed arm over the target level; then the tables."""
        self.cells_ = self.dose_ = self.interaction_ = pd.DataFrame()
        data, _ = prepare_trials(df, self.metric, ("backbone", "data_fraction"))
        self.x_ = next(
            (
                m
                for m in (self.x, "align/nmi", "align/purity")
                if m in data and data[m].notna().any()
            ),
            self.x,
        )
        rows = dial_rows(data)
        target, self.target_level_ = BaselineGain(metric=self.metric).target_level_rows(data)
        if rows.empty or target.empty or self.x_ not in rows:
            return self
        rows = rows[rows.groupby("family")["p"].transform("nunique") >= MIN_P]
        pair = ["data_fraction", "backbone", "seed"]
        base = target.groupby(pair)[self.metric].mean().rename("target_err")
        if "level_name" not in rows:
            rows = rows.assign(level_name=rows["level"].astype(str))
        keys = [*LEVEL_KEYS, "p", "data_fraction", "backbone", "seed"]
        columns = [self.metric, self.x_, *([COND_ENTROPY] if COND_ENTROPY in rows else [])]
        per_seed = rows.groupby(keys, dropna=False)[columns].mean().reset_index()
        per_seed = per_seed.join(base, on=pair, how="inner")
        if per_seed.empty:
            return self
        per_seed["gain"] = per_seed["target_err"] - per_seed[self.metric]
        self.cells_ = self._cells(per_seed)
        slopes = self._seed_slopes(per_seed)
        self.dose_ = self._dose(per_seed, slopes)
        self.interaction_ = self._interaction(slopes)
        return self

    def _cells(self, per_seed: pd.DataFrame) -> pd.DataFrame:
        group = [*LEVEL_KEYS, "p", "data_fraction", "backbone"]
        table = summarise_seeds(per_seed, group, "gain", self.alpha)
        table = adjust_table(table, CURVE, self.alpha, value="mean").rename(
            columns={"mean": "gain"}
        )
        means = per_seed.groupby(group, dropna=False)[self.x_].mean().rename("ami")
        table = table.join(means, on=group)
        if COND_ENTROPY in per_seed:
            h = per_seed.groupby(group, dropna=False)[COND_ENTROPY].mean().rename("cond_entropy")
            table = table.join(h, on=group)
        else:
            table["cond_entropy"] = math.nan
        cols = [*CURVE, "level", "level_name", "num_classes", "p", "n", "ami", "cond_entropy"]
        cols += ["gain", "ci_low", "ci_high", "ci_label", "pvalue", "p_adj"]
        return table[cols].sort_values([*CURVE, "num_classes", "p"]).reset_index(drop=True)

    def _seed_slopes(self, per_seed: pd.DataFrame) -> pd.DataFrame:
        """Per (curve, level, seed): OLS ``gain = intercept + slope * x`` over the dial."""
        group = [*LEVEL_KEYS, "data_fraction", "backbone", "seed"]
        rows = []
        for key, g in per_seed.dropna(subset=[self.x_, "gain"]).groupby(group, dropna=False):
            x, y = g[self.x_].to_numpy(float), g["gain"].to_numpy(float)
            if np.unique(x).size < 2:
                continue
            slope = float(np.cov(x, y, ddof=0)[0, 1] / np.var(x))
            rows.append((*key, slope, float(y.mean() - slope * x.mean())))
        return pd.DataFrame(rows, columns=[*group, "slope", "intercept"])

    def _dose(self, per_seed: pd.DataFrame, slopes: pd.DataFrame) -> pd.DataFrame:
        if slopes.empty:
            return pd.DataFrame()
        level = [*LEVEL_KEYS, "data_fraction", "backbone"]
        table = summarise_seeds(slopes, level, "slope", self.alpha)
        table = adjust_table(table, CURVE, self.alpha, value="mean").rename(
            columns={"mean": "slope"}
        )
        dial = per_seed.groupby(level, dropna=False)["p"].nunique().rename("n_p")
        cell_x = per_seed.groupby([*level, "p"], dropna=False)[self.x_].mean()
        span = cell_x.groupby(level, dropna=False).agg(["min", "max"])
        table = table.join(dial, on=level).join(
            span.rename(columns={"min": "x_low", "max": "x_high"}), on=level
        )
        table = table[table["n_p"] >= MIN_P]
        crossing = [
            self._threshold(slopes.set_index(level).loc[key], r.x_low, r.x_high)
            for key, r in zip(
                table[level].itertuples(index=False, name=None), table.itertuples(), strict=True
            )
        ]
        table = table.assign(**pd.DataFrame(crossing, index=table.index))
        cols = [*CURVE, "level", "level_name", "num_classes", "n", "n_p", "slope", "ci_low"]
        cols += ["ci_high", "ci_label", "pvalue", "p_adj", "x_low", "x_high", "threshold"]
        cols += ["threshold_ci_low", "threshold_ci_high", "crossing"]
        return table[cols].sort_values([*CURVE, "num_classes"]).reset_index(drop=True)

    def _threshold(self, seeds: pd.DataFrame, low: float, high: float) -> dict[str, float | str]:
        """Where the mean fitted line crosses gain 0, with Fieller's interval over seeds.

        Seed s's line is ``b0_s + b1_s x``; the mean line ``B0 + B1 x`` crosses 0 at
        ``-B0 / B1``. The interval is every x where the t test (seeds as units) of the mean
        line's gain at x does not reject 0 (Fieller 1954): exact for normal per-seed lines,
        where a seed bootstrap of the ratio under-covers with few seeds. Unbounded when the
        slope's own interval covers 0.
        """
        b0, b1 = seeds["intercept"].to_numpy(float), seeds["slope"].to_numpy(float)
        n, nan = len(b1), math.nan
        out: dict[str, float | str] = {"threshold": nan, "threshold_ci_low": nan}
        out["threshold_ci_high"] = nan
        B0, B1 = b0.mean(), b1.mean()
        if B1 == 0 or not np.isfinite(B1):
            return {**out, "crossing": "no slope"}
        out["threshold"] = float(-B0 / B1)
        name = "AMI" if self.x_ == AMI else self.x_
        unbounded = n < 2
        if n >= 2:
            t2 = float(sps.t.ppf(1 - self.alpha / 2, n - 1)) ** 2
            cov = np.cov(np.vstack([b0, b1]), ddof=1) / n
            qa = B1 * B1 - t2 * cov[1, 1]
            qb = B0 * B1 - t2 * cov[0, 1]
            qc = B0 * B0 - t2 * cov[0, 0]
            disc = qb * qb - qa * qc
            unbounded = qa <= 0 or disc < 0
            if not unbounded:
                root = math.sqrt(disc)
                out["threshold_ci_low"] = float((-qb - root) / qa)
                out["threshold_ci_high"] = float((-qb + root) / qa)
        where = (
            f"at {name} {out['threshold']:.3g}"
            if low <= out["threshold"] <= high
            else f"outside the observed range ({name} {low:.3g}-{high:.3g})"
        )
        if unbounded:
            where += " (interval unbounded: the slope is not distinguishable from 0)"
        return {**out, "crossing": where}

    def _interaction(self, slopes: pd.DataFrame) -> pd.DataFrame:
        """Per pair of levels of a curve: the per-seed difference of slopes (finer - coarser)."""
        rows = []
        for key, g in slopes.groupby(CURVE, dropna=False, sort=True):
            levels = g.drop_duplicates("level").sort_values("num_classes")
            wide = g.pivot_table(index="seed", columns="level", values="slope")
            for a, b in itertools.combinations(levels.itertuples(index=False), 2):
                d = (wide[b.level] - wide[a.level]).dropna()
                row = dict(zip(CURVE, key, strict=True))
                row.update(
                    level_a=a.level_name, classes_a=a.num_classes, slope_a=wide[a.level].mean()
                )
                row.update(
                    level_b=b.level_name, classes_b=b.num_classes, slope_b=wide[b.level].mean()
                )
                rows += [{**row, "seed": s, "difference": v} for s, v in d.items()]
        if not rows:
            return pd.DataFrame()
        per_seed = pd.DataFrame(rows)
        pair = [*CURVE, "level_a", "classes_a", "level_b", "classes_b"]
        slopes_ab = per_seed.groupby(pair, dropna=False)[["slope_a", "slope_b"]].first()
        table = summarise_seeds(per_seed, pair, "difference", self.alpha)
        table = adjust_table(table, CURVE, self.alpha, value="mean").rename(
            columns={"mean": "difference"}
        )
        table = table.join(slopes_ab, on=pair)
        cols = [*pair, "n", "slope_a", "slope_b", "difference", "ci_low", "ci_high", "ci_label"]
        return table[[*cols, "pvalue", "p_adj"]]
