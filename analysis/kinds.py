"""Paired differences between hierarchy kinds at matched class counts (HierarchyComparison)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pandas as pd

from analysis import stats
from analysis.gains import target_classes
from analysis.trial_table import (
    adjust_table,
    cell_means,
    prepare_trials,
    pretrained_arms,
    require_columns,
    summarise_seeds,
    within_unit_f_test,
)
from contracts import kind_order


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
        exclude: Sequence[str] = (),
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
        require_columns(data, ["num_classes"])
        self.target_classes_, _ = target_classes(data)
        data = pretrained_arms(data, self.exclude)
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
        ea = cell_means(data[data["hierarchy"] == a], self.metric, keys).rename("a")
        eb = cell_means(data[data["hierarchy"] == b], self.metric, keys).rename("b")
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
        rows = []
        for (frac, backbone), g in both.groupby(["data_fraction", "backbone"], sort=True):
            row = {"a": a, "b": b, "data_fraction": frac, "backbone": backbone}
            row.update(n_class_counts=g["num_classes"].nunique(), n_seeds=g["seed"].nunique())
            row.update(within_unit_f_test(g, "advantage", "num_classes", "seed"))
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
