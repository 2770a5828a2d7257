"""U-curves of error versus log(number of classes): the best level, the interpolated optimum
(UCurve, OptimumFit, fit_optimum) and the U test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import stats
from analysis.gains import target_classes
from analysis.trial_table import (
    FEW_SEEDS,
    GROUP_BY,
    SINGLE_SEED_NOTE,
    finer_domain,
    level_grid,
    prepare_trials,
    pretrained_arms,
    require_columns,
    row_examples_per_class,
    seed_matrix,
)


class UCurve:
    """Error versus log(number of classes) per group: the best level, the optimum, and a U test.

    Everything but ``curve_`` runs over the levels at or finer than the target
    (the paper's question; the coarse-to-target part is ``analysis.claim``'s own row).

    Parameters:
        metric: the error column (lower is better).
        group_by: one curve per combination of these columns.
        exclude: hierarchy kinds that are not curves, besides the scratch arms (never curves).
        n_boot: bootstrap resamples of seeds.
        alpha: 1 - confidence level, and the tests' significance level.
        random_state: seed of the bootstrap.

    Attributes after ``fit``:
        curve_: one row per (group, level), every level: ``num_classes``, ``n`` seeds,
            ``mean``, ``sd``, ``ci_low``/``ci_high`` (t interval over seeds),
            ``examples_per_class``.
        argmin_: one row per (group, level in the domain): ``num_classes``,
            ``p_argmin`` (share of seed-bootstrap resamples whose lowest mean is at
            this level) and ``in_best_set`` (the level is in the 1 - alpha confidence
            set for the best level: not significantly worse than any other level,
            paired one-sided t, Bonferroni over its comparisons).
        results_: one row per group: ``domain`` (which levels), ``optimum_level`` /
            ``argmin_classes`` / ``optimum_error`` (grid argmin), ``p_argmin`` (its
            bootstrap probability), ``best_set`` (class counts in the confidence set,
            "; "-joined), ``best_set_low``/``best_set_high`` (its extreme class counts);
            ``optimum`` (classes: the vertex of the three-point parabola around the
            argmin when ``interpolated``, else the argmin), ``interpolated``,
            ``curvature_p`` (one-sided paired test that the parabola is convex: the fit
            check), ``optimum_ci_low``/``optimum_ci_high`` (the hull of the vertex's
            expanded-percentile bootstrap interval and the best set, so it never
            leaves out a level that may be best); the two-lines test over the domain
            (``break_classes``, ``slope_low``, ``slope_high``, ``p_low``, ``p_high``,
            ``is_u``) and a ``note``.
        optimum_, optimum_ci_, is_u_, slopes_, pvalues_: the same keyed by group tuple.
        target_classes_: the target level's class count (NaN when unknown).
        n_dropped_: rows dropped for a NaN metric.
    """

    def __init__(
        self,
        *,
        metric: str = "target_error",
        group_by: Sequence[str] = GROUP_BY,
        exclude: Sequence[str] = (),
        n_boot: int = 2000,
        alpha: float = 0.05,
        random_state: int | None = 0,
    ) -> None:
        self.metric = metric
        self.group_by = tuple(group_by)
        self.exclude = tuple(exclude)
        self.n_boot = n_boot
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, df: pd.DataFrame) -> UCurve:
        """Fit every group's curve, best level, optimum, bootstrap CI and two-lines test."""
        require_columns(df, ["level", "num_classes"])
        data, self.n_dropped_ = prepare_trials(df, self.metric, self.group_by)
        self.target_classes_, _ = target_classes(data)
        data = pretrained_arms(data, self.exclude)
        rng = np.random.default_rng(self.random_state)
        curves, rows, argmins = [], [], []
        for key, g in data.groupby(list(self.group_by), dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            named = dict(zip(self.group_by, key, strict=True))
            grid = level_grid(g)
            seeds = sorted(g["seed"].dropna().unique())
            Y = seed_matrix(g, self.metric, grid["level"], seeds)
            curves.append(self._curve(g, grid, Y).assign(**named))
            in_domain, domain = finer_domain(grid, self.target_classes_)
            row, argmin = self._fit_group(g, grid[in_domain], seeds, Y[:, in_domain], rng)
            rows.append({**named, "domain": domain, **row})
            argmins.append(argmin.assign(**named))
        cols = [*self.group_by, "level", "level_name", "num_classes", "n", "mean", "sd"]
        cols += ["ci_low", "ci_high", "examples_per_class"]
        curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
        self.curve_ = curve.reindex(columns=cols)
        self.argmin_ = pd.concat(argmins, ignore_index=True) if argmins else pd.DataFrame()
        if argmins:
            order = [*self.group_by, "level", "level_name", "num_classes", "p_argmin"]
            self.argmin_ = self.argmin_[[c for c in [*order, "in_best_set"] if c in self.argmin_]]
        self.results_ = pd.DataFrame(rows)
        keys = [tuple(r[c] for c in self.group_by) for r in rows]
        by_key = dict(zip(keys, rows, strict=True))
        self.optimum_ = {k: r["optimum"] for k, r in by_key.items()}
        self.optimum_ci_ = {
            k: (r["optimum_ci_low"], r["optimum_ci_high"]) for k, r in by_key.items()
        }
        self.is_u_ = {k: r["is_u"] for k, r in by_key.items()}
        self.slopes_ = {k: (r["slope_low"], r["slope_high"]) for k, r in by_key.items()}
        self.pvalues_ = {k: (r["p_low"], r["p_high"]) for k, r in by_key.items()}
        return self

    def _curve(self, g: pd.DataFrame, grid: pd.DataFrame, Y: np.ndarray) -> pd.DataFrame:
        out = grid.drop(columns="x").copy()
        cis = [stats.mean_ci(Y[:, j], self.alpha) for j in range(Y.shape[1])]
        out["n"] = [c.n for c in cis]
        out["mean"] = [c.mean for c in cis]
        out["sd"] = [c.sd for c in cis]
        out["ci_low"] = [c.low for c in cis]
        out["ci_high"] = [c.high for c in cis]
        epc = row_examples_per_class(g).groupby(g["level"]).mean()
        out["examples_per_class"] = out["level"].map(epc).to_numpy()
        return out

    def _fit_group(
        self,
        g: pd.DataFrame,
        grid: pd.DataFrame,
        seeds: list,
        Y: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[dict, pd.DataFrame]:
        fit = fit_optimum(Y, grid, self.alpha, self.n_boot, rng)
        obs = g[g["level"].isin(grid["level"])]
        xobs = obs["level"].map(dict(zip(grid["level"], grid["x"], strict=True)))
        test = stats.two_lines_test(
            xobs.to_numpy(dtype=float),
            obs[self.metric].to_numpy(float),
            obs["seed"].to_numpy(),
            alpha=self.alpha,
        )
        row = {"n_seeds": len(seeds), "n_levels": len(grid), **fit.row}
        row.update(
            break_classes=math.exp(test.break_x) if np.isfinite(test.break_x) else math.nan,
            slope_low=test.slope_low,
            slope_high=test.slope_high,
            p_low=test.p_low,
            p_high=test.p_high,
            is_u=test.is_u,
        )
        row["note"] = "; ".join([*fit.notes, test.note])
        return row, fit.argmin


class OptimumFit:
    """The best level and the interpolated optimum of one curve (see ``fit_optimum``)."""

    def __init__(self, row: dict, argmin: pd.DataFrame, notes: list[str]) -> None:
        self.row, self.argmin, self.notes = row, argmin, notes


def fit_optimum(
    Y: np.ndarray, grid: pd.DataFrame, alpha: float, n_boot: int, rng: np.random.Generator
) -> OptimumFit:
    """Grid argmin, P(argmin = level), the best-level set and the checked 3-point optimum of ``Y``.

    ``Y`` is ``[seeds, levels]`` paired errors over ``grid``'s levels (``x`` = log classes).
    """
    nan = math.nan
    x = grid["x"].to_numpy(dtype=float)
    L = len(x)
    argmin = grid[[c for c in ("level", "level_name", "num_classes") if c in grid]].copy()
    row = {
        "optimum_level": nan,
        "argmin_classes": nan,
        "optimum_error": nan,
        "p_argmin": nan,
        "best_set": "",
        "best_set_low": nan,
        "best_set_high": nan,
        "optimum": nan,
        "interpolated": False,
        "curvature_p": nan,
        "optimum_ci_low": nan,
        "optimum_ci_high": nan,
    }
    if L == 0:
        argmin["p_argmin"], argmin["in_best_set"] = [], []
        return OptimumFit(row, argmin, ["no levels in the domain"])
    means = stats.nanmean(Y, axis=0)
    j = int(stats.grid_argmin(means))
    k = np.exp(x)
    row.update(optimum_level=grid["level"].iloc[j], argmin_classes=k[j], optimum_error=means[j])
    notes = []
    n = Y.shape[0]
    p_arg = np.full(L, nan)
    in_set = np.ones(L, dtype=bool)
    vertex_ci = (nan, nan)
    if n >= 2:
        idx = stats.bootstrap_indices(n, n_boot, rng)
        boot = stats.bootstrap_means(Y, idx)
        p_arg = stats.argmin_probability(boot)
        in_set = stats.best_level_set(Y, alpha)
        row["curvature_p"], convex = stats.curvature_test(Y, x, j, alpha)
        if convex:
            vertices = stats.optimum_log(boot, x)
            vertex_ci = stats.percentile_ci(vertices, alpha, n=n)
        if n < FEW_SEEDS:
            notes.append(f"{n} seeds: bootstrap probabilities are coarse")
    else:
        notes.append(SINGLE_SEED_NOTE)
        convex = False
    row["p_argmin"] = p_arg[j]
    kept = k[in_set]
    row["best_set"] = "; ".join(f"{v:g}" for v in kept)
    row["best_set_low"], row["best_set_high"] = float(kept.min()), float(kept.max())
    if convex:
        row["optimum"] = float(np.exp(stats.optimum_log(means, x)))
        row["interpolated"] = True
        low = min(float(np.exp(vertex_ci[0])), row["best_set_low"])
        high = max(float(np.exp(vertex_ci[1])), row["best_set_high"])
        row["optimum_ci_low"], row["optimum_ci_high"] = low, high
    else:
        row["optimum"] = k[j]
        if n >= 2:
            row["optimum_ci_low"], row["optimum_ci_high"] = (
                row["best_set_low"],
                row["best_set_high"],
            )
        why = "argmin at an end of the domain" if j in (0, L - 1) else "curvature not significant"
        notes.append(f"not interpolated ({why}): optimum is the grid argmin, CI the best-level set")
    argmin["p_argmin"], argmin["in_best_set"] = p_arg, in_set
    return OptimumFit(row, argmin.reset_index(drop=True), notes)
