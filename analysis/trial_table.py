"""The trial table's shared steps for every estimator: column checks, level grids, seed summaries,
multiplicity adjustment, cell means.

Seeds are paired replicates: seed s has the same data subset and init in every arm, so the
estimators compare within a seed and bootstrap whole seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import stats
from contracts import SCRATCH

GROUP_BY = ("hierarchy", "data_fraction", "backbone")
PAIR_KEYS = ("data_fraction", "backbone", "seed")
SINGLE_SEED_NOTE = "single seed: no CI"
FEW_SEEDS = (
    5  # below this the optimum bootstrap under-covers (see tests/test_analysis_estimators.py)
)


def require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ValueError naming the missing columns and the ones the table has."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"Trial table lacks column(s) {missing}; has: {sorted(map(str, df.columns))}"
        )


def is_scratch(df: pd.DataFrame) -> pd.Series:
    """Rows of a scratch arm, whatever its label (``scratch``, ``scratch_plain``, ...).

    A scratch arm has no pretraining level: the trial logs level -1 (contracts.SCRATCH_LEVEL)
    and level name ``scratch`` (or none: NaN, empty), and its arm kind (``hierarchy_kind``) is
    ``scratch``. Any of these marks a row; a table without level columns falls back to the
    label ``scratch``. Every estimator, verdict and figure asks this one function, so a sweep
    with several scratch arms (plain and compute-matched budgets) treats each as a baseline,
    never as a hierarchy kind.
    """
    mask = df["hierarchy"].astype(str).eq(SCRATCH) if "hierarchy" in df else False
    mask = pd.Series(mask, index=df.index, dtype=bool)
    if "hierarchy_kind" in df:
        mask |= df["hierarchy_kind"].astype(str).eq(SCRATCH)
    if "level" in df:
        level = pd.to_numeric(df["level"], errors="coerce")
        mask |= level.isna() | (level < 0)
    if "level_name" in df:
        name = df["level_name"]
        mask |= name.isna() | name.astype(str).str.strip().isin(["", SCRATCH])
    return mask


def scratch_labels(df: pd.DataFrame) -> list[str]:
    """The labels of the scratch arms present: ``scratch`` first, then the others by name."""
    labels = set(df.loc[is_scratch(df), "hierarchy"].astype(str)) if "hierarchy" in df else set()
    return sorted(labels, key=lambda label: (label != SCRATCH, label))


def pretrained_arms(df: pd.DataFrame, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of pretraining arms: no scratch arm (``is_scratch``), no kind in ``exclude``."""
    return df[~is_scratch(df) & ~df["hierarchy"].isin(list(exclude))]


def prepare_trials(df: pd.DataFrame, metric: str, keys: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Copy with the metric present, missing optional key columns filled, NaN rows dropped."""
    require_columns(df, ["hierarchy", "seed", metric])
    out = df.copy()
    for col in keys:
        if col not in out:
            out[col] = "all"
    out[metric] = pd.to_numeric(out[metric], errors="coerce")
    finite = np.isfinite(out[metric].to_numpy(dtype=float))
    return out[finite], int((~finite).sum())


def level_grid(g: pd.DataFrame) -> pd.DataFrame:
    """One row per level of a hierarchy: level, level_name, num_classes, x = log(num_classes)."""
    agg = {"num_classes": ("num_classes", "median")}
    if "level_name" in g:
        agg["level_name"] = ("level_name", "first")
    grid = g.groupby("level", dropna=True).agg(**agg).reset_index()
    grid = grid[grid["num_classes"] > 0].sort_values("num_classes", kind="stable")
    grid["x"] = np.log(grid["num_classes"].astype(float))
    return grid.reset_index(drop=True)


def seed_matrix(g: pd.DataFrame, metric: str, levels: Sequence, seeds: Sequence) -> np.ndarray:
    """``[n_seeds, n_levels]`` cell means (NaN for a missing cell)."""
    table = g.groupby(["seed", "level"])[metric].mean().unstack("level")
    return table.reindex(index=list(seeds), columns=list(levels)).to_numpy(dtype=float)


def row_examples_per_class(g: pd.DataFrame) -> pd.Series:
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
    require_columns(df, ["hierarchy", "level", "num_classes"])
    d = df.copy()
    d["examples_per_class"] = row_examples_per_class(d)
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


def finer_domain(grid: pd.DataFrame, target_k: float) -> tuple[np.ndarray, str]:
    """Mask of grid levels at or finer than the target, and a phrase naming the domain."""
    if not np.isfinite(target_k):
        return np.ones(len(grid), dtype=bool), "all levels (target level unknown)"
    return (grid["num_classes"] >= target_k).to_numpy(), f"levels >= target ({target_k:g} classes)"


def cell_means(df: pd.DataFrame, metric: str, keys: Sequence[str]) -> pd.Series:
    """Mean of ``metric`` per combination of ``keys`` (NaN keys kept as their own cells)."""
    return df.groupby(list(keys), dropna=False)[metric].mean()


def within_unit_f_test(g: pd.DataFrame, value: str, factor: str, unit: str) -> dict[str, float]:
    """Does ``value`` differ between the levels of ``factor`` within replicate units? The F test
    of ``factor`` in the OLS ``value ~ C(factor) + C(unit)`` against ``value ~ C(unit)``: the
    repeated-measures F with the unit as the subject (sphericity assumed; statsmodels).

    Returns ``f_stat``, ``df_num``, ``df_den`` and ``pvalue`` (NaN without two levels, two
    units and two residual degrees of freedom).
    """
    import statsmodels.formula.api as smf

    d = pd.DataFrame(
        {"y": g[value].to_numpy(float), "f": g[factor].astype(str), "u": g[unit].astype(str)}
    ).dropna()
    out = {"f_stat": math.nan, "df_num": math.nan, "df_den": math.nan, "pvalue": math.nan}
    n_levels, n_units = d["f"].nunique(), d["u"].nunique()
    if n_levels >= 2 and n_units >= 2 and len(d) > n_levels + n_units:
        full = smf.ols("y ~ C(f) + C(u)", data=d).fit()
        reduced = smf.ols("y ~ C(u)", data=d).fit()
        out.update(df_num=float(reduced.df_resid - full.df_resid), df_den=float(full.df_resid))
        scale = max(float(np.abs(d["y"]).max()), 1.0) ** 2 * 1e-20
        if full.ssr <= scale:  # no residual variation: F is 0/0 (no effect) or x/0 (exact)
            exact = reduced.ssr > scale
            out.update(f_stat=math.inf if exact else 0.0, pvalue=0.0 if exact else 1.0)
            return out
        f, p, _ = full.compare_f_test(reduced)
        out.update(f_stat=float(f), pvalue=float(p))
    return out
