"""Statistical building blocks: vectorised bootstraps, paired tests, Holm, two-lines, rank correlations.

Everything here is plain numpy/scipy on arrays; the estimators in
``analysis.estimators`` turn MLflow tables into these arrays.
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


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (NaNs stay NaN and do not count as tests)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    sub = p[ok]
    order = np.argsort(sub)
    adj = np.maximum.accumulate((m - np.arange(m)) * sub[order])
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


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
def optimum_log(means: np.ndarray, x: np.ndarray, half_window: int = 2) -> np.ndarray:
    """Location (on the ``x`` axis) of the minimum of mean curves ``[..., L]``.

    The grid argmin, refined by the vertex of a least-squares parabola over the
    ``2 * half_window + 1`` grid points around it (shifted inwards at the ends of
    the grid) and clipped to the argmin's two neighbours. An argmin at either
    end of the grid stays there (no interior optimum). NaN cells are left out of
    the parabola and never win; an all-NaN curve gives NaN.
    """
    m = np.where(np.isfinite(means), means, np.inf)
    L = m.shape[-1]
    j = np.argmin(m, axis=-1)
    allnan = ~np.isfinite(m).any(axis=-1)
    best = x[j]
    if L >= 3:
        w = min(2 * half_window + 1, L)
        start = np.clip(j - half_window, 0, L - w)
        window = start[..., None] + np.arange(w)
        xw = x[window]
        yw = np.take_along_axis(m, window, -1)
        present = np.isfinite(yw)
        weights = present.astype(float)
        yw = np.where(present, yw, 0.0)
        X = np.stack([np.ones_like(xw), xw, xw**2], -1)
        xtx = np.einsum("...wi,...w,...wj->...ij", X, weights, X)
        xty = np.einsum("...wi,...w,...w->...i", X, weights, yw)
        with np.errstate(all="ignore"):
            solvable = np.abs(np.linalg.det(xtx)) > 1e-12
            xtx = np.where(solvable[..., None, None], xtx, np.eye(3))
            coef = np.linalg.solve(xtx, xty[..., None])[..., 0]
            a, b = coef[..., 2], coef[..., 1]
            vertex = np.clip(-b / (2 * a), x[np.clip(j - 1, 0, L - 1)], x[np.clip(j + 1, 0, L - 1)])
        ok = (j > 0) & (j < L - 1) & solvable & (a > 0) & (present.sum(-1) >= 3)
        best = np.where(ok, vertex, best)
    return np.where(allnan, np.nan, best)


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
