"""How the optimal granularity and the gains move with pretraining data size (SizeGranularity)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import stats
from analysis.formatting import DATA_FRACTION, fmt_size
from analysis.gains import BaselineGain
from analysis.trial_table import (
    SINGLE_SEED_NOTE,
    adjust_table,
    level_grid,
    prepare_trials,
    pretrained_arms,
    require_columns,
    row_examples_per_class,
    seed_matrix,
    summarise_seeds,
)
from analysis.ucurve import UCurve


class SizeGranularity:
    """How the optimal granularity moves with pretraining data size.

    For each hierarchy kind and backbone: the optimum (as in ``UCurve``) at each
    data fraction, with a joint bootstrap over seeds (seed s's nested subsets
    stay together, so the fractions are paired), the slope of log(optimum) on
    log(data fraction) with its CI, and the shift between the largest and the
    smallest fraction (log ratio of optima, > 0 means the optimum is finer with
    more data).

    Attributes after ``fit``:
        optima_: one row per (hierarchy, backbone, data_fraction), from ``UCurve``
            per size (levels at or finer than the target): ``num_train``,
            ``n_seeds``, ``argmin_classes``, ``p_argmin``, ``best_set``, ``optimum``,
            ``interpolated``, ``optimum_ci_low``/``optimum_ci_high`` (never leaving
            out a level of the best-level set).
        trend_: descriptive, one row per (hierarchy, backbone): ``slope`` (d log
            optimum / d log fraction, 3-point optima over all levels, joint seed
            bootstrap) and CI, ``log_shift`` (log optimum at largest minus at
            smallest fraction) and CI, ``moves`` (the log_shift CI excludes 0) and a
            note. The verdict on size reads ``slopes_`` and ``argmin_``.
        heatmap_: mean error with rows (hierarchy, level, num_classes) and one
            column per data fraction.
        examples_per_class_: the same layout, examples per class.
        slopes_: the size x granularity answer, one row per (hierarchy, backbone,
            level) other than the target level: per seed, the gain over the target
            level (same seed and fraction) regressed on log(data fraction); ``slope``
            (mean over seeds: the seed is the unit) with ``ci_low``/``ci_high`` (Holm-
            consistent over the levels of one kind, ``ci_label``), ``pvalue``, ``p_adj``,
            ``gain_low``/``gain_high`` (mean gain at the smallest / largest fraction),
            ``difference`` (fitted gain change from the smallest to the largest
            fraction: slope x log ratio; with two sizes, exactly the paired difference)
            with ``difference_ci_low``/``difference_ci_high`` (the slope's CI, scaled),
            ``crossover_fraction`` (where the fitted gain is 0) and ``crossover``
            (that size named on the size axis, e.g. "at fraction 0.3" or "at
            renders_per_font 6.2" (``size_label``), "beyond the range" or "no slope"),
            ``n_fractions``, ``note`` (with two sizes: the slope is the difference of two
            points).
        argmin_: P(argmin = level) and the best-level set per (hierarchy, data
            fraction, backbone), as ``UCurve.argmin_``.
    """

    def __init__(
        self,
        *,
        metric: str = "target_error",
        hierarchies: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        n_boot: int = 2000,
        alpha: float = 0.05,
        random_state: int | None = 0,
        size_label: str = DATA_FRACTION,
    ) -> None:
        self.metric = metric
        self.size_label = size_label
        self.hierarchies = hierarchies
        self.exclude = tuple(exclude)
        self.n_boot = n_boot
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, df: pd.DataFrame) -> SizeGranularity:
        """Estimate optima per size, their trend with size, and the heatmap tables."""
        require_columns(df, ["level", "num_classes", "data_fraction"])
        data, self.n_dropped_ = prepare_trials(df, self.metric, ("backbone",))
        data = pretrained_arms(data, self.exclude)
        if self.hierarchies is not None:
            data = data[data["hierarchy"].isin(self.hierarchies)]
        rng = np.random.default_rng(self.random_state)
        trends = []
        for (kind, backbone), g in data.groupby(["hierarchy", "backbone"], sort=True):
            grid = level_grid(g)
            x = grid["x"].to_numpy()
            fractions = sorted(g["data_fraction"].dropna().unique())
            seeds = sorted(g["seed"].dropna().unique())
            Y = np.stack(
                [
                    seed_matrix(g[g["data_fraction"] == f], self.metric, grid["level"], seeds)
                    for f in fractions
                ],
                axis=1,
            )  # [seed, fraction, level]
            point = stats.optimum_log(stats.nanmean(Y, axis=0), x)  # [fraction]
            boot = None
            if len(seeds) >= 2:
                idx = stats.bootstrap_indices(len(seeds), self.n_boot, rng)
                boot = stats.optimum_log(stats.bootstrap_means(Y, idx), x)  # [B, fraction]
            trends.append(
                {
                    "hierarchy": kind,
                    "backbone": backbone,
                    **self._trend(fractions, point, boot, len(seeds)),
                }
            )
        self.trend_ = pd.DataFrame(trends)
        keys = ["hierarchy", "level", "num_classes"]
        cells = data.assign(examples_per_class=row_examples_per_class(data))
        cells["num_classes"] = cells.groupby(["hierarchy", "level"])["num_classes"].transform(
            "median"
        )
        self.heatmap_ = cells.pivot_table(
            index=keys, columns="data_fraction", values=self.metric, aggfunc="mean"
        )
        self.examples_per_class_ = cells.pivot_table(
            index=keys, columns="data_fraction", values="examples_per_class", aggfunc="mean"
        )
        self.slopes_ = self._gain_slopes(df)
        per_size = UCurve(
            metric=self.metric,
            exclude=self.exclude,
            n_boot=self.n_boot,
            alpha=self.alpha,
            random_state=self.random_state,
        ).fit(df if self.hierarchies is None else df[df["hierarchy"].isin(self.hierarchies)])
        self.argmin_ = per_size.argmin_
        cols = ["hierarchy", "backbone", "data_fraction", "n_seeds", "argmin_classes", "p_argmin"]
        cols += ["best_set", "optimum", "interpolated", "optimum_ci_low", "optimum_ci_high"]
        optima = per_size.results_.reindex(columns=cols)
        if "num_train" in data and len(optima):
            num_train = data.groupby("data_fraction")["num_train"].mean()
            optima.insert(3, "num_train", optima["data_fraction"].map(num_train))
        self.optima_ = optima
        return self

    def _gain_slopes(self, df: pd.DataFrame) -> pd.DataFrame:
        """Per level, the per-seed slope of the gain over the target level on log size."""
        gain = BaselineGain(metric=self.metric, alpha=self.alpha)
        data, _ = prepare_trials(df, self.metric, ("backbone", "data_fraction"))
        target, _ = gain.target_level_rows(data)
        if target.empty or data["data_fraction"].nunique() < 2:
            return pd.DataFrame()
        pair = ["data_fraction", "backbone", "seed"]
        base = target.groupby(pair)[self.metric].mean().rename("target_err")
        arms = pretrained_arms(data, self.exclude)
        if self.hierarchies is not None:
            arms = arms[arms["hierarchy"].isin(self.hierarchies)]
        arms = arms[~arms.index.isin(target.index)]
        level = ["hierarchy", "backbone", "level", "num_classes"]
        cells = arms.groupby([*level, "data_fraction", "seed"])[self.metric].mean()
        cells = cells.rename("err").reset_index().join(base, on=pair, how="inner")
        cells["gain"] = cells["target_err"] - cells["err"]
        cells["lf"] = np.log(cells["data_fraction"].astype(float))
        # Per seed OLS slope of gain on log fraction (needs two fractions in that seed).
        per_seed = cells.groupby([*level, "seed"]).apply(_ols_slope, include_groups=False)
        per_seed = per_seed.dropna().rename("slope").reset_index()
        if per_seed.empty:
            return pd.DataFrame()
        table = summarise_seeds(per_seed, level, "slope", self.alpha).rename(
            columns={"mean": "slope"}
        )
        table = adjust_table(table, ["hierarchy", "backbone"], self.alpha, "holm", value="slope")
        ends = cells.groupby(level)["data_fraction"].agg(["min", "max", "nunique"])
        means = cells.groupby([*level, "data_fraction"])["gain"].mean()
        lf_mean = cells.groupby(level)["lf"].mean()
        rows = []
        for r in table.itertuples(index=False):
            key = tuple(getattr(r, c) for c in level)
            lo, hi, n_f = ends.loc[key]
            g_lo, g_hi = means.loc[(*key, lo)], means.loc[(*key, hi)]
            mean_gain = cells.set_index(level).loc[key, "gain"].mean()
            crossing, where = _crossover(
                mean_gain, r.slope, lf_mean.loc[key], lo, hi, self.size_label
            )
            note = "two sizes: the slope is the difference of two points; a slope needs three"
            # The change of gain from the smallest to the largest size, with the slope's CI.
            span = math.log(hi) - math.log(lo)
            rows.append(
                {
                    "gain_low": g_lo,
                    "gain_high": g_hi,
                    "difference": r.slope * span,
                    "difference_ci_low": r.ci_low * span,
                    "difference_ci_high": r.ci_high * span,
                    "crossover_fraction": crossing,
                    "crossover": where,
                    "n_fractions": int(n_f),
                    "note": note if n_f == 2 else r.note,
                }
            )
        extra = pd.DataFrame(rows, index=table.index)
        cols = [*level, "n", "slope", "ci_low", "ci_high", "ci_label", "pvalue", "p_adj"]
        return pd.concat([table[cols], extra], axis=1)

    def _trend(
        self, fractions: list, point: np.ndarray, boot: np.ndarray | None, n_seeds: int
    ) -> dict:
        nan = math.nan
        out = {
            "n_fractions": len(fractions),
            "slope": nan,
            "slope_ci_low": nan,
            "slope_ci_high": nan,
            "log_shift": nan,
            "log_shift_ci_low": nan,
            "log_shift_ci_high": nan,
            "moves": False,
        }
        if len(fractions) < 2:
            out["note"] = "one data fraction: size effect not estimable"
            return out
        lf = np.log(np.asarray(fractions, dtype=float))
        lf = lf - lf.mean()

        def slope(opt: np.ndarray) -> np.ndarray:
            return (opt * lf).sum(-1) / (lf * lf).sum()

        out["slope"], out["log_shift"] = float(slope(point)), float(point[-1] - point[0])
        if boot is None:
            out["note"] = SINGLE_SEED_NOTE
            return out
        ok = np.isfinite(boot).all(axis=1)
        out["slope_ci_low"], out["slope_ci_high"] = map(
            float, stats.percentile_ci(slope(boot[ok]), self.alpha, n=n_seeds)
        )
        diff = boot[ok, -1] - boot[ok, 0]
        out["log_shift_ci_low"], out["log_shift_ci_high"] = map(
            float, stats.percentile_ci(diff, self.alpha, n=n_seeds)
        )
        out["moves"] = bool(out["log_shift_ci_low"] > 0 or out["log_shift_ci_high"] < 0)
        if out["moves"]:
            direction = "finer" if out["log_shift"] > 0 else "coarser"
            out["note"] = f"optimum is {direction} with more data (shift CI excludes 0)"
        else:
            out["note"] = "no detectable move of the optimum with data size (shift CI covers 0)"
        return out


def _ols_slope(g: pd.DataFrame) -> float:
    """OLS slope of ``gain`` on ``lf`` within one seed (NaN with fewer than two sizes)."""
    lf = g["lf"].to_numpy(float)
    if np.unique(lf).size < 2:
        return math.nan
    lc = lf - lf.mean()
    return float((lc * g["gain"].to_numpy(float)).sum() / (lc * lc).sum())


def _crossover(
    mean_gain: float, slope: float, lf_mean: float, lo: float, hi: float, label: str
) -> tuple[float, str]:
    """The size where the line ``mean_gain + slope * (lf - lf_mean)`` crosses 0, and a phrase
    naming it on the size axis ``label`` ("at fraction 0.3", "at renders_per_font 6.2")."""
    if not np.isfinite(slope) or slope == 0:
        return math.nan, "no slope"
    log_fraction = lf_mean - mean_gain / slope
    if math.log(lo) <= log_fraction <= math.log(hi):
        size = math.exp(log_fraction)
        return size, f"at {fmt_size(label, float(f'{size:.3g}'))}"
    return (math.exp(log_fraction) if abs(log_fraction) < 700 else math.nan), "beyond the range"
