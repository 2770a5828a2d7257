"""Statistical building blocks on arrays: bootstraps, paired tests, multiplicity, optima, two-lines.

Everything here is numpy/scipy/statsmodels on arrays; the estimators in
``analysis.estimators`` and ``analysis.claim`` turn trial tables into these arrays.
Multiple-testing corrections come from statsmodels (``multipletests``); what is
hand-written says why in its docstring. The bootstraps are hand-written rather than
``scipy.stats.bootstrap``: they resample whole seeds of a ``[seed, ..., level]``
matrix once for every curve and statistic at a time (argmin probabilities, vertices;
vectorised as two matrix products), and use Hesterberg's expanded percentile
interval for few seeds, neither of which scipy's function offers.

Longer than 400 lines because it is the single home of the array statistics every estimator
shares (bootstraps, tests, multiplicity, optima, correlations); each function is short.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats


def bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot, n]`` indices resampling ``n`` units with replacement."""
    return rng.integers(0, n, size=(n_boot, n))


def nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmean`` without the all-NaN warning (an all-NaN slice gives NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def bootstrap_means(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``nanmean(values[idx], axis=1)`` without building ``values[idx]``: ``[n_boot, ...]``.

    ``values`` is ``[n_units, ...]`` (finite or NaN), ``idx`` the ``[n_boot, n]``
    resampled units of ``bootstrap_indices``. A resample's mean is the mean of
    the units weighted by how often each was drawn, so all resamples are two
    matrix products (``values[idx]`` would hold n_boot x n copies of the cells:
    400 MB for 600 seeds x 40 cells x 2000 resamples). The sums are taken in
    another order than ``np.nanmean``'s, so results agree to rounding (~1e-15).
    """
    values = np.asarray(values, dtype=float)
    if np.isinf(values).any():
        raise ValueError("bootstrap_means takes finite or NaN values, got an infinite one")
    n_boot, n = idx.shape
    units = values.shape[0]
    # Times each unit is drawn in each resample (one bincount over offset indices).
    offsets = (idx + units * np.arange(n_boot)[:, None]).ravel()
    counts = np.bincount(offsets, minlength=n_boot * units).reshape(n_boot, units).astype(float)
    flat = values.reshape(units, -1)
    present = ~np.isnan(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (counts @ np.where(present, flat, 0.0)) / (counts @ present)
    return means.reshape(n_boot, *values.shape[1:])


def expanded_alpha(alpha: float, n: int) -> float:
    """Hesterberg's (2015) expanded-percentile level: the percentile bootstrap is too narrow for
    small ``n`` (it uses z instead of t and divides by n, not n - 1), so its tails are taken at
    ``Phi(-sqrt(n / (n - 1)) * t_{n-1, 1 - alpha/2})`` per side instead of ``alpha / 2``."""
    if n < 2:
        return alpha
    return float(2 * stats.norm.cdf(-math.sqrt(n / (n - 1)) * stats.t.ppf(1 - alpha / 2, n - 1)))


def percentile_ci(
    samples: np.ndarray, alpha: float, axis: int = 0, n: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap ``samples`` (NaN samples ignored).

    With ``n`` (the number of resampled units) the interval is Hesterberg's
    expanded percentile interval, which keeps its coverage with few seeds.
    """
    level = expanded_alpha(alpha, n) if n is not None else alpha
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low = np.nanquantile(samples, level / 2, axis=axis)
        high = np.nanquantile(samples, 1 - level / 2, axis=axis)
    return low, high


@dataclass(frozen=True)
class MeanCI:
    """Mean of replicates with a t interval (NaN bounds when fewer than two replicates)."""

    mean: float
    sd: float
    n: int
    low: float
    high: float
    pvalue: float  # two-sided one-sample t test of mean == 0; NaN when n < 2


def mean_ci(values: np.ndarray, alpha: float = 0.05) -> MeanCI:
    """t interval for the mean of ``values`` (NaNs dropped); also the t test against 0."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, 0, math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if n < 2:
        return MeanCI(mean, math.nan, n, math.nan, math.nan, math.nan)
    sd = float(v.std(ddof=1))
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
    if se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    return MeanCI(mean, sd, n, mean - half, mean + half, p)


def paired_test(diffs: np.ndarray, test: str = "t") -> float:
    """Two-sided p-value that paired differences centre on 0 (``t`` or ``wilcoxon``)."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return math.nan
    if test == "t":
        return mean_ci(d).pvalue
    if test == "wilcoxon":
        if np.all(d == 0):
            return 1.0
        return float(stats.wilcoxon(d, zero_method="zsplit").pvalue)
    raise ValueError(f"Unknown paired test ({test}); accepted: t, wilcoxon")


ADJUSTMENTS = ("holm", "bonferroni", "none")


def adjust_pvalues(pvalues: np.ndarray, method: str = "holm") -> np.ndarray:
    """Multiplicity-adjusted p-values (NaNs stay NaN and do not count as tests).

    Bonferroni comes from statsmodels' ``multipletests``. Holm is the same
    step-down formula written out (tests/test_analysis_estimators.py checks it
    against statsmodels): ``multipletests(method="holm")`` runs ``gc.collect()``
    on every call, about 0.1 s with pandas loaded, which made the calibration
    bench (thousands of families) 50 times slower.
    """
    if method not in ADJUSTMENTS:
        raise ValueError(f"Unknown adjustment ({method}); accepted: {', '.join(ADJUSTMENTS)}")
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    if method == "none":
        out[ok] = p[ok]
    elif method == "bonferroni":
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="bonferroni")[1]
    else:
        sub = p[ok]
        order = np.argsort(sub)
        adj = np.maximum.accumulate((m - np.arange(m)) * sub[order])
        res = np.empty(m)
        res[order] = np.minimum(adj, 1.0)
        out[ok] = res
    return out


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (NaNs stay NaN and do not count as tests)."""
    return adjust_pvalues(pvalues, "holm")


def interval_levels(pvalues: np.ndarray, alpha: float, method: str = "holm") -> np.ndarray:
    """Per hypothesis, the two-sided error rate of the t interval agreeing with the adjusted test.

    A t interval at level ``1 - a`` excludes 0 exactly when the t test's p < a,
    so choosing ``a`` per hypothesis makes the shown interval and the verdict agree:
    - ``bonferroni``: ``alpha / m`` for every hypothesis (simultaneous intervals);
    - ``holm``: the level of the step at which Holm judged the hypothesis:
      ``alpha / (m - r)`` for the r-th smallest p (0-based) when rejected, and the
      level of the first step that failed for every hypothesis not rejected
      (hand-written: statsmodels has Holm p-values but no intervals; each interval
      covers at least 1 - alpha, the family is not simultaneous);
    - ``none``: ``alpha``.
    NaN p-values get ``alpha / m``.
    """
    p = np.asarray(pvalues, dtype=float)
    ok = np.isfinite(p)
    m = max(int(ok.sum()), 1)
    if method == "none":
        return np.full(p.shape, alpha)
    out = np.full(p.shape, alpha / m)
    if method == "bonferroni" or not ok.any():
        return out
    if method != "holm":
        raise ValueError(f"Unknown adjustment ({method}); accepted: {', '.join(ADJUSTMENTS)}")
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(p[idx], kind="stable")]
    steps = alpha / (m - np.arange(m))
    failed = np.flatnonzero(p[order] >= steps)
    stop = int(failed[0]) if failed.size else m
    out[order[:stop]] = steps[:stop]
    if stop < m:
        out[order[stop:]] = steps[stop]
    return out


INTERVAL_LABELS = {  # Holm-consistent: each interval at the level of its Holm step
    "holm": "Holm-consistent 95%",
    "bonferroni": "Bonferroni simultaneous 95%",
    "none": "unadjusted 95%",
}


def interval_label(method: str, alpha: float) -> str:
    """How an interval of ``interval_levels(method)`` is labelled in tables."""
    return INTERVAL_LABELS[method].replace("95", f"{100 * (1 - alpha):g}")


def t_intervals(
    mean: np.ndarray, sd: np.ndarray, n: np.ndarray, level_alpha: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided t intervals ``mean -+ t_{n-1, 1 - a/2} sd / sqrt(n)`` per row (NaN when n < 2)."""
    mean, sd, n = (np.asarray(v, dtype=float) for v in (mean, sd, n))
    with np.errstate(all="ignore"):
        half = stats.t.ppf(1 - np.asarray(level_alpha, float) / 2, n - 1) * sd / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    return mean - half, mean + half


def cohens_dz(diffs: np.ndarray) -> float:
    """Paired effect size: mean difference over the SD of the differences."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return math.inf * np.sign(d.mean()) if d.mean() != 0 else 0.0
    return float(d.mean() / sd)


# ---------------------------------------------------------------- optimum of a curve
def grid_argmin(means: np.ndarray) -> np.ndarray:
    """Index of the lowest mean of curves ``[..., L]`` (NaN cells never win; all-NaN gives 0)."""
    return np.argmin(np.where(np.isfinite(means), means, np.inf), axis=-1)


def optimum_log(means: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Location on the ``x`` axis of the minimum of mean curves ``[..., L]``.

    The grid argmin, refined by the vertex of the parabola through the argmin and
    its two grid neighbours (three points, so the parabola is local whatever the
    grid's length: a far, catastrophic level cannot pull it). An argmin at either
    end of the grid, or next to a missing cell, stays on the grid point. The
    vertex of a parabola through a lowest middle point lies between the
    midpoints to its neighbours. NaN cells never win; an all-NaN curve gives NaN.
    """
    m = np.where(np.isfinite(means), means, np.inf)
    L = m.shape[-1]
    j = np.argmin(m, axis=-1)
    allnan = ~np.isfinite(m).any(axis=-1)
    best = x[j]
    if L >= 3:
        jl, jr = np.clip(j - 1, 0, L - 1), np.clip(j + 1, 0, L - 1)
        x0, x1, x2 = x[jl], x[j], x[jr]
        y0, y1, y2 = (np.take_along_axis(m, i[..., None], -1)[..., 0] for i in (jl, j, jr))
        with np.errstate(all="ignore"):
            num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
            den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
            vertex = x1 - 0.5 * num / den
        ok = (j > 0) & (j < L - 1) & np.isfinite(y0) & np.isfinite(y2) & (den != 0)
        best = np.where(ok, vertex, best)
    return np.where(allnan, np.nan, best)


def curvature_test(Y: np.ndarray, x: np.ndarray, j: int, alpha: float) -> tuple[float, bool]:
    """Is the three-point parabola around interior level ``j`` convex beyond noise? (p, passes).

    ``Y`` is ``[seeds, L]`` paired errors. Per seed, the parabola's second
    coefficient through levels j-1, j, j+1 (a second divided difference in x);
    a one-sided paired t test that it is > 0. A parabola through three points fits
    them exactly, so this is the check that the fit identifies a minimum at all:
    a flat bottom gives a vertex that is noise, and is then not interpolated.
    """
    if j <= 0 or j >= Y.shape[1] - 1:
        return math.nan, False
    x0, x1, x2 = x[j - 1], x[j], x[j + 1]
    y0, y1, y2 = Y[:, j - 1], Y[:, j], Y[:, j + 1]
    a = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
    ci = mean_ci(a)
    if not np.isfinite(ci.pvalue):
        return math.nan, False
    p = ci.pvalue / 2 if ci.mean > 0 else 1 - ci.pvalue / 2
    return float(p), bool(p < alpha)


def argmin_probability(boot_means: np.ndarray) -> np.ndarray:
    """P(argmin = level) over bootstrap curves ``[B, ..., L]``: ``[..., L]``, rows summing to 1."""
    j = grid_argmin(boot_means)
    L = boot_means.shape[-1]
    return (j[..., None] == np.arange(L)).mean(axis=0)


def best_level_set(Y: np.ndarray, alpha: float) -> np.ndarray:
    """Levels not significantly worse than another level: a 1 - alpha confidence set for the best.

    ``Y`` is ``[seeds, L]`` paired errors (NaN: missing cell). Level l leaves the
    set when, for some other level m, a one-sided paired t test says l's error is
    higher than m's at ``alpha / (L - 1)`` (Bonferroni over the L - 1 comparisons
    of one level). The truly best level is excluded only if one of its own L - 1
    true nulls is rejected, so the set contains it with probability >= 1 - alpha
    (Gupta's subset selection / Hsu's comparisons with the best, paired).
    Hand-written: no maintained Python library offers paired subset selection.
    A level that is significantly better than every other stays in by construction.
    """
    L = Y.shape[1]
    keep = np.isfinite(Y).sum(axis=0) >= 1
    if L < 2:
        return keep
    level = alpha / (L - 1)
    for l_ in range(L):
        for m_ in range(L):
            if l_ == m_ or not keep[l_]:
                continue
            d = Y[:, l_] - Y[:, m_]
            d = d[np.isfinite(d)]
            if d.size < 2:
                continue
            ci = mean_ci(d)
            if ci.mean > 0 and np.isfinite(ci.pvalue) and ci.pvalue / 2 < level:
                keep[l_] = False
    return keep


# ---------------------------------------------------------------- two-lines test
@dataclass(frozen=True)
class TwoLines:
    """Result of Simonsohn's (2018) two-lines test for a U (minimum) shape."""

    break_x: float
    slope_low: float
    slope_high: float
    p_low: float
    p_high: float
    n_low: int
    n_high: int
    is_u: bool
    note: str


def _demean(a: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Subtract each group's mean (the within transformation of a fixed-effects model)."""
    counts = np.bincount(codes, minlength=n_groups).astype(float)
    if a.ndim == 1:
        return a - (np.bincount(codes, weights=a, minlength=n_groups) / counts)[codes]
    return np.column_stack([_demean(col, codes, n_groups) for col in a.T])


def _interrupted(x: np.ndarray, y: np.ndarray, groups: np.ndarray, xc: float):
    """Two lines meeting the break ``xc`` (x <= xc low), groups as fixed effects.

    Fixed effects via Frisch-Waugh-Lovell: demean y and the regressors within
    each group, then OLS with the groups' degrees of freedom removed.
    """
    low = x <= xc
    codes = np.unique(groups, return_inverse=True)[1]
    n_groups = int(codes.max()) + 1
    X = np.column_stack(
        [np.where(low, x - xc, 0.0), np.where(low, 0.0, x - xc), (~low).astype(float)]
    )
    Xd, yd = _demean(X, codes, n_groups), _demean(y, codes, n_groups)
    beta, *_ = np.linalg.lstsq(Xd, yd, rcond=None)
    dof = len(y) - np.linalg.matrix_rank(Xd) - n_groups
    resid = yd - Xd @ beta
    sigma2 = float(resid @ resid) / dof if dof > 0 else math.nan
    se = np.sqrt(np.clip(np.diag(sigma2 * np.linalg.pinv(Xd.T @ Xd)), 0, None))
    with np.errstate(all="ignore"):
        t = beta[:2] / se[:2]
    p = 2 * stats.t.sf(np.abs(t), dof) if dof > 0 else np.array([math.nan, math.nan])
    return beta[:2], np.abs(t), p, int(low.sum()), int((~low).sum())


def two_lines_test(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    alpha: float = 0.05,
) -> TwoLines:
    """Simonsohn's two-lines test that ``y`` falls then rises in ``x`` (a U with a minimum).

    ``x`` (e.g. log number of classes), ``y`` (error) and ``groups`` (seed: a fixed
    effect, so seeds are paired replicates) are per observation. The break starts
    at the median x of the grid points whose mean is within one standard error
    of the lowest mean (the flat bottom), then the "Robin Hood" step moves it
    within the flat bottom so the line with the weaker evidence gets the larger
    share of it (the break is the z_high / (z_low + z_high) quantile of the
    flat bottom's observations). A U needs a negative
    low slope and a positive high slope, each significant at ``alpha``
    (two-sided). Each line needs at least two distinct x values.
    """
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, groups = x[ok], y[ok], groups[ok]
    grid = np.unique(x)
    nan = math.nan
    if grid.size < 4:
        return TwoLines(nan, nan, nan, nan, nan, 0, 0, False, "fewer than 4 granularity levels")
    means = np.array([y[x == g].mean() for g in grid])
    ses = np.array(
        [
            y[x == g].std(ddof=1) / math.sqrt((x == g).sum()) if (x == g).sum() > 1 else 0.0
            for g in grid
        ]
    )
    j = int(np.argmin(means))
    if j == 0 or j == grid.size - 1:
        end = "coarsest" if j == 0 else "finest"
        return TwoLines(
            grid[j], nan, nan, nan, nan, 0, 0, False, f"lowest error at the {end} level"
        )
    flat = grid[means <= means[j] + ses[j]]
    # Each line needs two distinct x values: the break lies in [grid[1], grid[-3]].
    lo_ok, hi_ok = grid[1], grid[-3]
    xc = float(np.clip(np.median(flat), lo_ok, hi_ok))
    xc = float(grid[grid <= xc].max())
    _, z, _, _, _ = _interrupted(x, y, groups, xc)
    if np.all(np.isfinite(z)) and z.sum() > 0 and flat.size > 1:
        # Robin Hood, within the flat bottom: the weaker line gets the larger share of it.
        in_flat = x[(x >= flat.min()) & (x <= flat.max())]
        xc_new = float(np.quantile(in_flat, z[1] / z.sum()))
        xc = float(np.clip(xc_new, lo_ok, hi_ok))
        xc = float(grid[grid <= xc].max())
    slopes, _, p, n_low, n_high = _interrupted(x, y, groups, xc)
    is_u = bool(slopes[0] < 0 and slopes[1] > 0 and p[0] < alpha and p[1] < alpha)
    if is_u:
        note = "U: falls then rises, both slopes significant"
    elif slopes[0] < 0 and slopes[1] > 0:
        note = "U-like shape but a slope is not significant"
    else:
        note = "no sign change across the break"
    return TwoLines(
        xc, float(slopes[0]), float(slopes[1]), float(p[0]), float(p[1]), n_low, n_high, is_u, note
    )


# ---------------------------------------------------------------- rank correlations
def _rank_rows(a: np.ndarray) -> np.ndarray:
    return stats.rankdata(a, axis=-1)


def _corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def _residualise_rows(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Residual of ``a`` on ``[1, c]`` per row (rows are independent regressions)."""
    c = c - c.mean(axis=-1, keepdims=True)
    a0 = a - a.mean(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        beta = (a0 * c).sum(-1, keepdims=True) / (c * c).sum(-1, keepdims=True)
    beta = np.nan_to_num(beta)
    return a0 - beta * c


def spearman(x: np.ndarray, y: np.ndarray, control: np.ndarray | None = None) -> np.ndarray:
    """Spearman correlation per row of ``[..., n]`` arrays; partial on ``control`` when given.

    The partial version correlates the residuals of the ranks of x and y after a
    linear regression on the ranks of ``control``.
    """
    rx, ry = _rank_rows(x), _rank_rows(y)
    if control is not None:
        rc = _rank_rows(control)
        rx, ry = _residualise_rows(rx, rc), _residualise_rows(ry, rc)
    return _corr_rows(rx, ry)


def correlation_pvalue(r: float, n: int, n_controls: int = 0) -> float:
    """Two-sided p-value of a (partial) correlation via the t distribution."""
    dof = n - 2 - n_controls
    if not np.isfinite(r) or dof < 1:
        return math.nan
    if abs(r) >= 1:
        return 0.0
    t = r * math.sqrt(dof / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), dof))
