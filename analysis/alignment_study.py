"""Does transfer gain rise with label alignment? Spearman and mixed-model slopes (AlignmentStudy)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import stats
from analysis.gains import BaselineGain
from analysis.trial_table import (
    PAIR_KEYS,
    cell_means,
    prepare_trials,
    pretrained_arms,
    scratch_labels,
)
from contracts import ALIGNMENT_METRICS


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


class AlignmentStudy:
    """Does transfer gain rise with alignment between pretraining and target labels?

    Unit: a label function (tag ``label_fn``; (hierarchy, level) when absent)
    within a (data fraction, backbone). Its gain is the mean over seeds of the
    paired ``scratch - arm`` error (``baseline_kind``: the scratch arm's label; default the
    first present, ``scratch`` first; without a scratch arm: minus the error). For
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
        baseline_kind: str | None = None,
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
        # The baseline: the named scratch arm, else the first present (``scratch`` first).
        label = self.baseline_kind or next(iter(scratch_labels(data)), None)
        base = data[data["hierarchy"] == label]
        arms = pretrained_arms(data).copy()
        keys = [c for c in PAIR_KEYS if c in data]
        if base.empty:
            self.outcome_ = "negative error"
            arms["gain"] = -arms[self.metric]
        else:
            self.outcome_ = "gain over scratch"
            arms = arms.join(
                cell_means(base, self.metric, keys).rename("baseline"), on=keys, how="inner"
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
        arms = pretrained_arms(data).join(base, on=pair, how="inner")
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
