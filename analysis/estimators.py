"""Estimators over the tidy trial table: U-curves, gains, size x granularity, hierarchy and alignment studies.

scikit-learn style: settings in ``__init__``, ``fit(df)`` returns ``self`` and
sets result attributes ending in ``_``. ``df`` is what ``analysis.load.load_runs``
returns (one row per finished trial). Seeds are paired replicates: seed s has
the same data subset and init in every arm, so every comparison is made within
a seed and every bootstrap resamples whole seeds.

Rows whose metric is NaN (a failed or diverged trial that still finished) are
dropped and counted in ``n_dropped_``; missing cells are left out of the cell's
statistics; a cell with one seed gets a mean but NaN interval bounds.

Example:
    >>> from testing.simulate import simulate_sweep
    >>> df = simulate_sweep(seeds=5, random_state=0)
    >>> UCurve().fit(df).results_[["hierarchy", "optimum", "is_u"]]  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import stats
from contracts import ALIGNMENT_METRICS, kind_order

GROUP_BY = ("hierarchy", "data_fraction", "backbone")
PAIR_KEYS = ("data_fraction", "backbone", "seed")
SINGLE_SEED_NOTE = "single seed: no CI"
FEW_SEEDS = (
    5  # below this the optimum bootstrap under-covers (see tests/test_analysis_estimators.py)
)


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"Trial table lacks column(s) {missing}; has: {sorted(map(str, df.columns))}"
        )


def prepare_trials(df: pd.DataFrame, metric: str, keys: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Copy with the metric present, missing optional key columns filled, NaN rows dropped."""
    _require(df, ["hierarchy", "seed", metric])
    out = df.copy()
    for col in keys:
        if col not in out:
            out[col] = "all"
    out[metric] = pd.to_numeric(out[metric], errors="coerce")
    finite = np.isfinite(out[metric].to_numpy(dtype=float))
    return out[finite], int((~finite).sum())


def _level_grid(g: pd.DataFrame) -> pd.DataFrame:
    """One row per level of a hierarchy: level, level_name, num_classes, x = log(num_classes)."""
    agg = {"num_classes": ("num_classes", "median")}
    if "level_name" in g:
        agg["level_name"] = ("level_name", "first")
    grid = g.groupby("level", dropna=True).agg(**agg).reset_index()
    grid = grid[grid["num_classes"] > 0].sort_values("num_classes", kind="stable")
    grid["x"] = np.log(grid["num_classes"].astype(float))
    return grid.reset_index(drop=True)


def _matrix(g: pd.DataFrame, metric: str, levels: Sequence, seeds: Sequence) -> np.ndarray:
    """``[n_seeds, n_levels]`` cell means (NaN for a missing cell)."""
    table = g.groupby(["seed", "level"])[metric].mean().unstack("level")
    return table.reindex(index=list(seeds), columns=list(levels)).to_numpy(dtype=float)


def _examples_per_class(g: pd.DataFrame) -> pd.Series:
    """The logged ``examples_per_class`` metric, else ``num_train / num_classes``, per row."""
    derived = pd.Series(np.nan, index=g.index)
    if "num_train" in g:
        derived = pd.to_numeric(g["num_train"], errors="coerce") / g["num_classes"]
    if "examples_per_class" in g:
        return pd.to_numeric(g["examples_per_class"], errors="coerce").fillna(derived)
    return derived


def examples_per_class_table(df: pd.DataFrame) -> pd.DataFrame:
    """Training examples per pretraining class at each (hierarchy, level, data fraction).

    More classes means fewer examples per class (the confound reviewers ask
    about); ``examples_per_class`` comes from the metric of that name when
    logged, else ``num_train / num_classes``.
    """
    _require(df, ["hierarchy", "level", "num_classes"])
    d = df.copy()
    d["examples_per_class"] = _examples_per_class(d)
    keys = [c for c in ("hierarchy", "level", "level_name", "data_fraction") if c in d]
    agg = {
        "num_classes": ("num_classes", "median"),
        "examples_per_class": ("examples_per_class", "mean"),
    }
    if "num_train" in d:
        agg["num_train"] = ("num_train", "mean")
    return d.groupby(keys, dropna=False).agg(**agg).reset_index()


def summarise_seeds(
    per_seed: pd.DataFrame, keys: list[str], col: str, alpha: float
) -> pd.DataFrame:
    """Per group of ``keys``: n, mean, sd, t interval, one-sample t p-value and d_z of ``col``.

    ``per_seed`` holds one value per seed (a paired difference); NaNs are ignored.
    Vectorised over groups (no Python loop per cell).
    """
    from scipy import stats as sps

    v = per_seed.dropna(subset=[col])
    g = v.groupby(keys, dropna=False, sort=True)[col]
    out = pd.DataFrame({"n": g.count(), "mean": g.mean(), "sd": g.std(ddof=1)})
    n = out["n"].to_numpy(float)
    sd = out["sd"].to_numpy(float)
    mean = out["mean"].to_numpy(float)
    with np.errstate(all="ignore"):
        se = sd / np.sqrt(n)
        half = sps.t.ppf(1 - alpha / 2, n - 1) * se
        t = mean / se
        p = 2 * sps.t.sf(np.abs(t), n - 1)
        p = np.where(se == 0, np.where(mean == 0, 1.0, 0.0), p)
        dz = np.where(sd == 0, np.where(mean == 0, 0.0, np.sign(mean) * np.inf), mean / sd)
    single = n < 2
    out["ci_low"] = np.where(single, np.nan, mean - half)
    out["ci_high"] = np.where(single, np.nan, mean + half)
    out["pvalue"] = np.where(single, np.nan, p)
    out["effect_size"] = np.where(single, np.nan, dz)
    out["note"] = np.where(single, SINGLE_SEED_NOTE, "")
    return out.reset_index()


def adjust_table(
    table: pd.DataFrame,
    family: Sequence[str],
    alpha: float,
    method: str = "holm",
    value: str = "mean",
) -> pd.DataFrame:
    """``table`` (from ``summarise_seeds``) with adjusted p-values and the intervals agreeing with them.

    Within each family (rows sharing the ``family`` columns; all rows when empty):
    ``p_adj`` (``method`` over the family's p-values, statsmodels), ``ci_low`` /
    ``ci_high`` replaced by t intervals at the level ``stats.interval_levels`` gives
    (so an interval excludes 0 exactly when ``p_adj < alpha``), the unadjusted
    interval kept as ``ci_low_unadjusted`` / ``ci_high_unadjusted``, ``ci_label``
    naming the interval and ``family_size``.
    """
    out = table.copy()
    out["ci_low_unadjusted"], out["ci_high_unadjusted"] = out["ci_low"], out["ci_high"]
    out["p_adj"] = np.nan
    out["family_size"] = 0
    level = np.full(len(out), alpha)
    groups = (
        out.groupby(list(family), dropna=False).indices if family else {(): np.arange(len(out))}
    )
    for rows in groups.values():
        p = out["pvalue"].to_numpy(dtype=float)[rows]
        out.iloc[rows, out.columns.get_loc("p_adj")] = stats.adjust_pvalues(p, method)
        out.iloc[rows, out.columns.get_loc("family_size")] = int(np.isfinite(p).sum())
        level[rows] = stats.interval_levels(p, alpha, method)
    out["ci_low"], out["ci_high"] = stats.t_intervals(out[value], out["sd"], out["n"], level)
    out["ci_label"] = stats.interval_label(method, alpha)
    return out


def target_classes(df: pd.DataFrame, reference_kind: str = "manual") -> tuple[float, str]:
    """The target level's class count and how it was found (NaN and a reason when it is not).

    The target level is BaselineGain's: the ``reference_kind`` level named by the
    ``target`` param, else the level with the scratch arm's class count.
    """
    rows, how = BaselineGain(reference_kind=reference_kind).target_level_rows(df)
    if rows.empty:
        return math.nan, how
    return float(rows["num_classes"].median()), how


def finer_domain(grid: pd.DataFrame, target_k: float) -> tuple[np.ndarray, str]:
    """Mask of grid levels at or finer than the target, and a phrase naming the domain."""
    if not np.isfinite(target_k):
        return np.ones(len(grid), dtype=bool), "all levels (target level unknown)"
    return (grid["num_classes"] >= target_k).to_numpy(), f"levels >= target ({target_k:g} classes)"


class UCurve:
    """Error versus log(number of classes) per group: the best level, the optimum, and a U test.

    Everything but ``curve_`` runs over the levels at or finer than the target
    (the paper's question; the coarse-to-target part is ``analysis.claim``'s own row).

    Parameters:
        metric: the error column (lower is better).
        group_by: one curve per combination of these columns.
        exclude: hierarchy kinds that are not curves (the scratch baseline).
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
        exclude: Sequence[str] = ("scratch",),
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
        _require(df, ["level", "num_classes"])
        data, self.n_dropped_ = prepare_trials(df, self.metric, self.group_by)
        self.target_classes_, _ = target_classes(data)
        data = data[~data["hierarchy"].isin(self.exclude)]
        rng = np.random.default_rng(self.random_state)
        curves, rows, argmins = [], [], []
        for key, g in data.groupby(list(self.group_by), dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            named = dict(zip(self.group_by, key, strict=True))
            grid = _level_grid(g)
            seeds = sorted(g["seed"].dropna().unique())
            Y = _matrix(g, self.metric, grid["level"], seeds)
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
        epc = _examples_per_class(g).groupby(g["level"]).mean()
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


class SizeGranularity:
    """How the optimal granularity moves with pretraining data size.

    For each hierarchy kind and backbone: the optimum (as in ``UCurve``) at each
    data fraction, with a joint bootstrap over seeds (seed s's nested subsets
    stay together, so the fractions are paired), the slope of log(optimum) on
    log(data fraction) with its CI, and the shift between the largest and the
    smallest fraction (log ratio of optima, > 0 means the optimum is finer with
    more data).

    Attributes after ``fit``:
        optima_: one row per (hierarchy, backbone, data_fraction): ``optimum``,
            ``optimum_ci_low``/``optimum_ci_high``, ``num_train``, ``n_seeds``.
        trend_: one row per (hierarchy, backbone): ``slope`` (d log optimum /
            d log fraction) and CI, ``log_shift`` (log optimum at largest minus at
            smallest fraction) and CI, ``moves`` (the log_shift CI excludes 0) and a note.
        heatmap_: mean error with rows (hierarchy, level, num_classes) and one
            column per data fraction.
        examples_per_class_: the same layout, examples per class.
        slopes_: the size x granularity answer, one row per (hierarchy, backbone,
            level) other than the target level: per seed, the gain over the target
            level (same seed and fraction) regressed on log(data fraction); ``slope``
            (mean over seeds: the seed is the unit) with ``ci_low``/``ci_high`` (Holm-
            consistent over the levels of one kind, ``ci_label``), ``pvalue``, ``p_adj``,
            ``gain_low``/``gain_high`` (mean gain at the smallest / largest fraction),
            ``crossover_fraction`` (where the fitted gain is 0) and ``crossover``
            (that fraction, "beyond the range" or "no slope"), ``n_fractions``, ``note``
            (with two sizes: the slope is the difference of two points).
        argmin_: P(argmin = level) and the best-level set per (hierarchy, data
            fraction, backbone), as ``UCurve.argmin_``.
    """

    def __init__(
        self,
        *,
        metric: str = "target_error",
        hierarchies: Sequence[str] | None = None,
        exclude: Sequence[str] = ("scratch",),
        n_boot: int = 2000,
        alpha: float = 0.05,
        random_state: int | None = 0,
    ) -> None:
        self.metric = metric
        self.hierarchies = hierarchies
        self.exclude = tuple(exclude)
        self.n_boot = n_boot
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, df: pd.DataFrame) -> SizeGranularity:
        """Estimate optima per size, their trend with size, and the heatmap tables."""
        _require(df, ["level", "num_classes", "data_fraction"])
        data, self.n_dropped_ = prepare_trials(df, self.metric, ("backbone",))
        data = data[~data["hierarchy"].isin(self.exclude)]
        if self.hierarchies is not None:
            data = data[data["hierarchy"].isin(self.hierarchies)]
        rng = np.random.default_rng(self.random_state)
        optima, trends = [], []
        for (kind, backbone), g in data.groupby(["hierarchy", "backbone"], sort=True):
            grid = _level_grid(g)
            x = grid["x"].to_numpy()
            fractions = sorted(g["data_fraction"].dropna().unique())
            seeds = sorted(g["seed"].dropna().unique())
            Y = np.stack(
                [
                    _matrix(g[g["data_fraction"] == f], self.metric, grid["level"], seeds)
                    for f in fractions
                ],
                axis=1,
            )  # [seed, fraction, level]
            point = stats.optimum_log(stats.nanmean(Y, axis=0), x)  # [fraction]
            boot = None
            if len(seeds) >= 2:
                idx = stats.bootstrap_indices(len(seeds), self.n_boot, rng)
                boot = stats.optimum_log(stats.bootstrap_means(Y, idx), x)  # [B, fraction]
            for i, f in enumerate(fractions):
                sub = g[g["data_fraction"] == f]
                low = high = math.nan
                if boot is not None:
                    low, high = stats.percentile_ci(boot[:, i], self.alpha, n=len(seeds))
                optima.append(
                    {
                        "hierarchy": kind,
                        "backbone": backbone,
                        "data_fraction": f,
                        "num_train": float(sub["num_train"].mean())
                        if "num_train" in sub
                        else math.nan,
                        "n_seeds": int(sub["seed"].nunique()),
                        "optimum": math.exp(point[i]) if np.isfinite(point[i]) else math.nan,
                        "optimum_ci_low": math.exp(low) if np.isfinite(low) else math.nan,
                        "optimum_ci_high": math.exp(high) if np.isfinite(high) else math.nan,
                    }
                )
            trends.append(
                {
                    "hierarchy": kind,
                    "backbone": backbone,
                    **self._trend(fractions, point, boot, len(seeds)),
                }
            )
        self.optima_ = pd.DataFrame(optima)
        self.trend_ = pd.DataFrame(trends)
        keys = ["hierarchy", "level", "num_classes"]
        cells = data.assign(examples_per_class=_examples_per_class(data))
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
        self.argmin_ = (
            UCurve(
                metric=self.metric,
                exclude=self.exclude,
                n_boot=self.n_boot,
                alpha=self.alpha,
                random_state=self.random_state,
            )
            .fit(df if self.hierarchies is None else df[df["hierarchy"].isin(self.hierarchies)])
            .argmin_
        )
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
        arms = data[~data["hierarchy"].isin(self.exclude)]
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
            crossing, where = _crossover(mean_gain, r.slope, lf_mean.loc[key], lo, hi)
            note = "two sizes: the slope is the difference of two points; a slope needs three"
            rows.append(
                {
                    "gain_low": g_lo,
                    "gain_high": g_hi,
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


def _crossover(mean_gain: float, slope: float, lf_mean: float, lo: float, hi: float):
    """The data fraction where the line ``mean_gain + slope * (lf - lf_mean)`` crosses 0."""
    if not np.isfinite(slope) or slope == 0:
        return math.nan, "no slope"
    log_fraction = lf_mean - mean_gain / slope
    if math.log(lo) <= log_fraction <= math.log(hi):
        return math.exp(log_fraction), f"at fraction {math.exp(log_fraction):.3g}"
    return (math.exp(log_fraction) if abs(log_fraction) < 700 else math.nan), "beyond the range"


def stats_norm_ppf(q: np.ndarray) -> np.ndarray:
    """Standard normal quantiles (the Wald intervals of the mixed models)."""
    from scipy import stats as sps

    return sps.norm.ppf(q)


def _mixed_slope(g: pd.DataFrame, metric: str) -> dict:
    """MixedLM ``gain ~ metric + log_classes`` with seed and cell random intercepts (crossed).

    Falls back to a seed-only random intercept when the crossed model does not
    converge, and says so in ``model``.
    """
    import warnings

    import statsmodels.formula.api as smf

    nan = math.nan
    out = {"n_obs": len(g), "n_seeds": g["seed"].nunique(), "n_cells": g["cell"].nunique()}
    out.update(slope=nan, se=nan, pvalue=nan, model="", note="")
    if out["n_seeds"] < 2 or g[metric].nunique() < 3 or out["n_obs"] < 6:
        out["note"] = f"too few seeds or {metric} values for a model"
        return out
    d = g.assign(a=g[metric].astype(float), unit=g["seed"].astype(str), one=1)
    covariates = "a + log_classes" if d["log_classes"].nunique() >= 2 else "a"
    attempts = [
        (
            "seed + (kind, level) random intercepts",
            "one",
            {"seed": "0 + C(unit)", "cell": "0 + C(cell)"},
        ),
        ("seed random intercept", "unit", None),
    ]
    for name, groups, vc in attempts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = smf.mixedlm(f"gain ~ {covariates}", d, groups=d[groups], vc_formula=vc).fit(
                    reml=True
                )
            except (ValueError, np.linalg.LinAlgError):
                continue
        if res.converged and np.isfinite(res.bse["a"]):
            out.update(slope=float(res.params["a"]), se=float(res.bse["a"]))
            out.update(pvalue=float(res.pvalues["a"]), model=name)
            if covariates == "a":
                out["note"] = "one class count: not adjusted for log classes"
            return out
    out["note"] = "mixed model did not converge"
    return out


def _cell_means(df: pd.DataFrame, metric: str, keys: Sequence[str]) -> pd.Series:
    return df.groupby(list(keys), dropna=False)[metric].mean()


class BaselineGain:
    """Paired (same seed, fraction, backbone) gain of every arm over two baselines.

    ``gain = baseline error - arm error`` (positive: the arm's pretraining helps).
    Baselines:
      - ``scratch``: rows with ``hierarchy == baseline_kind`` (trained on target labels only).
      - ``target_level``: pretraining on the target's own labels, i.e. rows of
        ``reference_kind`` (the manual hierarchy) whose ``level_name`` (or ``level``)
        equals the trial's ``target`` param; when no such row exists, the
        reference level whose ``num_classes`` equals the scratch arm's (the
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
        baseline_kind: str = "scratch",
        reference_kind: str = "manual",
        target_column: str = "target",
        alpha: float = 0.05,
    ) -> None:
        self.metric = metric
        self.baseline_kind = baseline_kind
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
        scratch = data[data["hierarchy"] == self.baseline_kind]
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
        baselines = {"scratch": data[data["hierarchy"] == self.baseline_kind]}
        baselines["target_level"], self.target_level_ = self.target_level_rows(data)
        arms = data[data["hierarchy"] != self.baseline_kind]
        arm_keys = ["hierarchy", "level", *[c for c in ("level_name",) if c in arms]]
        rows = []
        for name, base in baselines.items():
            if base.empty:
                continue
            base_mean = _cell_means(base, self.metric, keys).rename("baseline")
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


class HierarchyComparison:
    """Paired differences between hierarchy kinds at matched class counts, with adjusted intervals.

    For a pair (a, b) and each (data fraction, backbone, num_classes) where both
    kinds have trials, ``advantage = error_b - error_a`` per seed (positive: a is
    better). Cells where both arms used the same label function (the same
    partition, e.g. every kind's leaf level) are skipped: their difference is 0
    by construction. Pooled: per seed, the mean advantage over the matched class
    counts **finer than the target** (the paper's question; at or below the
    target one kind may be the target's own labels), then tested across seeds.
    Pooling can cancel effects of opposite sign, so the cells decide "mixed" and
    a kind x level interaction test says whether the advantage depends on the level.

    Attributes after ``fit``:
        cells_: one row per (a, b, data_fraction, backbone, num_classes): ``finer``
            (more classes than the target), ``n``, ``advantage``, ``ci_low``/``ci_high``
            (the interval agreeing with ``p_adj``; ``ci_label``), the unadjusted
            interval, ``effect_size`` (Cohen's d_z), ``pvalue``, ``p_adj`` (``adjust``
            within each pair (a, b)), ``p_holm`` (the same when adjust is holm).
        pooled_: one row per (a, b, data_fraction, backbone) with finer matched
            counts: the same columns over seeds of the pooled advantage,
            ``n_class_counts``; ``p_adj`` over the whole table.
        interaction_: one row per (a, b, data_fraction, backbone) with two or more
            matched counts: ``n_class_counts``, ``n_seeds``, ``f_stat``, ``df_num``,
            ``df_den``, ``pvalue`` of the F test that the advantage is the same at every
            matched count (OLS of the per-seed advantage on count and seed fixed
            effects, statsmodels), ``p_adj`` over the table.
        target_classes_: the target's class count (NaN: unknown, then every count pools).

    With ``test="wilcoxon"`` the p-values are Wilcoxon's and the intervals stay t
    intervals, so they can disagree near the threshold; the default t test agrees.
    """

    def __init__(
        self,
        *,
        metric: str = "target_error",
        pairs: Sequence[tuple[str, str]] | None = None,
        test: str = "t",
        exclude: Sequence[str] = ("scratch",),
        adjust: str = "holm",
        alpha: float = 0.05,
    ) -> None:
        self.metric = metric
        self.pairs = pairs
        self.test = test
        self.exclude = tuple(exclude)
        self.adjust = adjust
        self.alpha = alpha

    def fit(self, df: pd.DataFrame) -> HierarchyComparison:
        """Compare every pair of kinds per count, pooled over finer counts, and by interaction."""
        if self.test not in ("t", "wilcoxon"):
            raise ValueError(f"Unknown paired test ({self.test}); accepted: t, wilcoxon")
        data, self.n_dropped_ = prepare_trials(df, self.metric, ("backbone", "data_fraction"))
        _require(data, ["num_classes"])
        self.target_classes_, _ = target_classes(data)
        data = data[~data["hierarchy"].isin(self.exclude)]
        kinds = kind_order(list(data["hierarchy"].unique()))
        pairs = (
            list(self.pairs) if self.pairs is not None else list(itertools.combinations(kinds, 2))
        )
        keys = ["data_fraction", "backbone", "num_classes", "seed"]
        cells, pooled, interactions = [], [], []
        for a, b in pairs:
            both = self._matched(data, a, b, keys)
            if both.empty:
                continue
            cells.append(self._summary(both, keys[:3]).assign(a=a, b=b))
            interactions += self._interaction(both, a, b)
            finer = both[~(both["num_classes"] <= self.target_classes_)]
            if finer.empty:
                continue
            per_seed = finer.groupby(["data_fraction", "backbone", "seed"])["advantage"].mean()
            pool = self._summary(per_seed.reset_index(), ["data_fraction", "backbone"])
            n_counts = (
                finer.groupby(["data_fraction", "backbone"])["num_classes"]
                .nunique()
                .rename("n_class_counts")
            )
            pooled.append(pool.join(n_counts, on=["data_fraction", "backbone"]).assign(a=a, b=b))
        cells_table = self._order(cells, ["num_classes"])
        if len(cells_table):
            cells_table.insert(5, "finer", ~(cells_table["num_classes"] <= self.target_classes_))
        self.cells_ = self._adjusted(cells_table, ["a", "b"])
        self.pooled_ = self._adjusted(self._order(pooled, ["n_class_counts"]), [])
        self.interaction_ = pd.DataFrame(interactions)
        if len(self.interaction_):
            self.interaction_["p_adj"] = stats.adjust_pvalues(
                self.interaction_["pvalue"].to_numpy(), self.adjust
            )
        return self

    def _matched(self, data: pd.DataFrame, a: str, b: str, keys: list[str]) -> pd.DataFrame:
        """Per seed and matched count: both kinds' errors, ``advantage``; shared labels left out."""
        ea = _cell_means(data[data["hierarchy"] == a], self.metric, keys).rename("a")
        eb = _cell_means(data[data["hierarchy"] == b], self.metric, keys).rename("b")
        both = pd.concat([ea, eb], axis=1, join="inner").reset_index()
        if both.empty:
            return both
        both["advantage"] = both["b"] - both["a"]
        if "label_fn" in data and data["label_fn"].notna().any():
            la = data[data["hierarchy"] == a].groupby(keys)["label_fn"].first().rename("la")
            lb = data[data["hierarchy"] == b].groupby(keys)["label_fn"].first().rename("lb")
            both = both.join(la, on=keys).join(lb, on=keys)
            same = (both["la"] == both["lb"]).groupby([both[k] for k in keys[:3]]).transform("all")
            both = both[~same.to_numpy(bool)]
        return both

    def _interaction(self, both: pd.DataFrame, a: str, b: str) -> list[dict]:
        """F test of count x (a vs b): does the paired advantage differ between matched counts?"""
        import statsmodels.formula.api as smf

        rows = []
        for (frac, backbone), g in both.groupby(["data_fraction", "backbone"], sort=True):
            g = g.assign(count=g["num_classes"].astype(str), unit=g["seed"].astype(str))
            n_counts, n_seeds = g["count"].nunique(), g["unit"].nunique()
            row = {"a": a, "b": b, "data_fraction": frac, "backbone": backbone}
            row.update(n_class_counts=n_counts, n_seeds=n_seeds)
            row.update(f_stat=math.nan, df_num=math.nan, df_den=math.nan, pvalue=math.nan)
            if n_counts >= 2 and n_seeds >= 2 and len(g) > n_counts + n_seeds:
                full = smf.ols("advantage ~ C(count) + C(unit)", data=g).fit()
                reduced = smf.ols("advantage ~ C(unit)", data=g).fit()
                f, p, df_num = full.compare_f_test(reduced)
                row.update(f_stat=f, df_num=df_num, df_den=full.df_resid, pvalue=p)
            rows.append(row)
        return rows

    def _order(self, parts: list[pd.DataFrame], extra: list[str]) -> pd.DataFrame:
        cols = ["a", "b", "data_fraction", "backbone", *extra, "n", "advantage", "sd"]
        cols += ["ci_low", "ci_high", "effect_size", "pvalue", "note"]
        if not parts:
            return pd.DataFrame(columns=cols)
        table = pd.concat(parts, ignore_index=True).rename(columns={"mean": "advantage"})
        return table[cols]

    def _summary(self, per_seed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        out = summarise_seeds(per_seed, keys, "advantage", self.alpha)
        if self.test == "wilcoxon":
            p = per_seed.groupby(keys, sort=True)["advantage"].apply(
                lambda d: stats.paired_test(d.to_numpy(), "wilcoxon")
            )
            out["pvalue"] = p.to_numpy()
        return out

    def _adjusted(self, table: pd.DataFrame, family: list[str]) -> pd.DataFrame:
        if table.empty:
            return table.assign(p_adj=[], p_holm=[], ci_label=[])
        out = adjust_table(table, family, self.alpha, self.adjust, value="advantage")
        # p_holm: the historical column (what the report shows next to the pooled advantage).
        holm = out if self.adjust == "holm" else adjust_table(table, family, self.alpha, "holm")
        out["p_holm"] = holm["p_adj"]
        return out


class AlignmentStudy:
    """Does transfer gain rise with alignment between pretraining and target labels?

    Unit: a label function (tag ``label_fn``; (hierarchy, level) when absent)
    within a (data fraction, backbone). Its gain is the mean over seeds of the
    paired ``scratch - arm`` error (without a scratch arm: minus the error). For
    each alignment metric: Spearman's rho across label functions with a
    percentile bootstrap CI (label functions resampled) and a t-test p-value,
    and the partial Spearman controlling for log(num_classes) (ranks of metric
    and gain residualised on the rank of the class count), as more classes
    could drive both.

    Attributes after ``fit``:
        points_: one row per unit: alignment metrics, ``num_classes``, ``gain``.
        results_: one row per (data_fraction, backbone, alignment metric):
            ``n``, ``rho`` + CI + ``pvalue``, ``partial_rho`` + CI + ``partial_pvalue``,
            ``detected`` (the rho CI excludes 0 and p < alpha) and a note.
        outcome_: "gain over scratch" or "negative error" (no scratch arm).
        seed_model_: the analysis to quote (the correlations above treat label
            functions as independent: pseudo-replicated). One row per (data_fraction,
            backbone, alignment metric): a linear mixed model (statsmodels MixedLM)
            of the per-seed gain over the target-level arm (same seed, fraction,
            backbone: the same protocol) on the metric and log(classes), with
            random intercepts for the seed and for the (kind, level) cell, so near-
            copies of one cell count once. ``n_obs``, ``n_seeds``, ``n_cells``,
            ``slope`` (gain per unit of the metric at fixed log classes),
            ``ci_low``/``ci_high`` (Wald, Bonferroni over the metrics of one
            fraction: ``ci_label``), ``pvalue``, ``p_adj``, ``model`` and ``note``.
    """

    def __init__(
        self,
        *,
        metric: str = "target_error",
        alignment_metrics: Sequence[str] = ALIGNMENT_METRICS,
        baseline_kind: str = "scratch",
        n_boot: int = 2000,
        alpha: float = 0.05,
        min_units: int = 5,
        random_state: int | None = 0,
    ) -> None:
        self.metric = metric
        self.alignment_metrics = tuple(alignment_metrics)
        self.baseline_kind = baseline_kind
        self.n_boot = n_boot
        self.alpha = alpha
        self.min_units = min_units
        self.random_state = random_state

    def fit(self, df: pd.DataFrame) -> AlignmentStudy:
        """Aggregate units, then correlate each alignment metric with the gain."""
        data, self.n_dropped_ = prepare_trials(df, self.metric, ("backbone", "data_fraction"))
        present = [m for m in self.alignment_metrics if m in data and data[m].notna().any()]
        base = data[data["hierarchy"] == self.baseline_kind]
        arms = data[data["hierarchy"] != self.baseline_kind].copy()
        keys = [c for c in PAIR_KEYS if c in data]
        if base.empty:
            self.outcome_ = "negative error"
            arms["gain"] = -arms[self.metric]
        else:
            self.outcome_ = "gain over scratch"
            arms = arms.join(
                _cell_means(base, self.metric, keys).rename("baseline"), on=keys, how="inner"
            )
            arms["gain"] = arms["baseline"] - arms[self.metric]
        if "label_fn" in arms and arms["label_fn"].notna().all():
            unit = arms["label_fn"].astype(str)
        else:
            unit = arms["hierarchy"].astype(str) + ":" + arms["level"].astype(str)
        arms["unit"] = unit
        group = ["data_fraction", "backbone", "unit"]
        agg = {m: (m, "mean") for m in present}
        agg.update(
            num_classes=("num_classes", "median"),
            gain=("gain", "mean"),
            n_seeds=("seed", "nunique"),
            hierarchy=("hierarchy", "first"),
        )
        self.points_ = (
            arms.groupby(group, sort=True).agg(**agg).reset_index() if len(arms) else pd.DataFrame()
        )
        rng = np.random.default_rng(self.random_state)
        rows = []
        if len(self.points_):
            for (frac, backbone), g in self.points_.groupby(
                ["data_fraction", "backbone"], sort=True
            ):
                for m in present:
                    rows.append(
                        {
                            "data_fraction": frac,
                            "backbone": backbone,
                            "metric": m,
                            **self._correlate(g, m, rng),
                        }
                    )
        self.results_ = pd.DataFrame(rows)
        self.metrics_ = present
        self.seed_model_ = self._seed_model(data, present)
        return self

    def _seed_model(self, data: pd.DataFrame, present: list[str]) -> pd.DataFrame:
        """Mixed models of gain over the target level on each metric, seed and cell as units."""
        target, _ = BaselineGain(metric=self.metric).target_level_rows(data)
        if target.empty or not present:
            return pd.DataFrame()
        pair = ["data_fraction", "backbone", "seed"]
        base = target.groupby(pair)[self.metric].mean().rename("target_err")
        arms = data[data["hierarchy"] != self.baseline_kind].join(base, on=pair, how="inner")
        arms = arms.assign(
            gain=arms["target_err"] - arms[self.metric],
            log_classes=np.log(arms["num_classes"].astype(float)),
            cell=arms["hierarchy"].astype(str) + ":" + arms["level"].astype(str),
        )
        rows = []
        for (frac, backbone), g in arms.groupby(["data_fraction", "backbone"], sort=True):
            for m in present:
                fit = _mixed_slope(g.dropna(subset=[m, "gain"]), m)
                rows.append({"data_fraction": frac, "backbone": backbone, "metric": m, **fit})
        table = pd.DataFrame(rows)
        table["family_size"] = table.groupby(["data_fraction", "backbone"])["pvalue"].transform(
            lambda p: int(p.notna().sum())
        )
        level = self.alpha / table["family_size"].clip(lower=1)
        z = stats_norm_ppf(1 - level / 2)
        table["ci_low"] = table["slope"] - z * table["se"]
        table["ci_high"] = table["slope"] + z * table["se"]
        table["p_adj"] = table.groupby(["data_fraction", "backbone"])["pvalue"].transform(
            lambda p: stats.adjust_pvalues(p.to_numpy(), "bonferroni")
        )
        table["ci_label"] = stats.interval_label("bonferroni", self.alpha)
        cols = ["data_fraction", "backbone", "metric", "n_obs", "n_seeds", "n_cells", "slope"]
        cols += ["ci_low", "ci_high", "ci_label", "pvalue", "p_adj", "model", "note"]
        return table[cols]

    def _correlate(self, g: pd.DataFrame, m: str, rng: np.random.Generator) -> dict:
        ok = g[[m, "gain", "num_classes"]].dropna()
        n = len(ok)
        nan = math.nan
        out = {
            "n": n,
            "rho": nan,
            "ci_low": nan,
            "ci_high": nan,
            "pvalue": nan,
            "partial_rho": nan,
            "partial_ci_low": nan,
            "partial_ci_high": nan,
            "partial_pvalue": nan,
            "detected": False,
        }
        if n < self.min_units or ok[m].nunique() < 3:
            out["note"] = f"too few label functions with varied {m} ({n}; need {self.min_units})"
            return out
        a, y, c = (ok[col].to_numpy(float) for col in (m, "gain", "num_classes"))
        c = np.log(c)
        out["rho"] = float(stats.spearman(a, y))
        out["pvalue"] = stats.correlation_pvalue(out["rho"], n)
        idx = stats.bootstrap_indices(n, self.n_boot, rng)
        out["ci_low"], out["ci_high"] = map(
            float, stats.percentile_ci(stats.spearman(a[idx], y[idx]), self.alpha, n=n)
        )
        if np.unique(c).size >= 2:
            out["partial_rho"] = float(stats.spearman(a, y, c))
            out["partial_pvalue"] = stats.correlation_pvalue(out["partial_rho"], n, 1)
            boot = stats.spearman(a[idx], y[idx], c[idx])
            out["partial_ci_low"], out["partial_ci_high"] = map(
                float, stats.percentile_ci(boot, self.alpha, n=n)
            )
        excludes = out["ci_low"] > 0 or out["ci_high"] < 0
        out["detected"] = bool(excludes and out["pvalue"] < self.alpha)
        out["note"] = "" if out["detected"] else "no detectable association"
        return out


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
