"""The report's figures of a fitted Analysis: each ``plot_*`` returns a matplotlib Figure (None when
the sweep lacks what it needs), ``write_figures`` saves them all as PNGs.

Every figure reads the same estimator tables the verdicts and the report's tables read, so a
number in a figure is the number in the text. Example (in a notebook):

    >>> import analysis
    >>> a = analysis.analyze(analysis.load_export("runs.jsonl.gz"))  # doctest: +SKIP
    >>> analysis.figures.plot_gain_over_target(a)  # doctest: +SKIP

Longer than 400 lines because each of the report's figures is one short function over the same
fitted Analysis and shared grid and legend helpers; a module per figure would scatter them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis import estimators as est
from analysis.fit import ALPHA, Analysis
from analysis.stats import mean_ci
from analysis.trial_table import is_scratch, pretrained_arms, scratch_labels
from analysis.verdicts import primary_kind
from contracts import VERDICT_PAIRS, kind_order

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

DPI = 110


def _null_formatter() -> Any:
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def _class_axis(ax: Any, classes: Any) -> None:
    """A log class axis ticked at the grid's own class counts, in plain numbers.

    Matplotlib's default log ticks print "3x10^1 4x10^1" side by side on a short
    grid; the levels' counts are what a reader looks up.
    """
    ticks = sorted({float(c) for c in classes if np.isfinite(c) and c > 0})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{c:g}" for c in ticks])
    ax.xaxis.set_minor_formatter(_null_formatter())


def write_figures(a: Analysis, out: Path) -> dict[str, bool]:
    """Every figure as ``out/<name>.png``; returns which were drawn (a sweep may lack the data)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    drawn = {}
    for name, plot in FIGURES.items():
        fig = plot(a)
        drawn[name] = fig is not None
        if fig is not None:
            fig.savefig(out / f"{name}.png", dpi=DPI)
            plt.close(fig)
    return drawn


# Each scratch arm's horizontal line: (colour, line style), in scratch_labels' order.
SCRATCH_STYLES = (("k", "--"), ("0.5", ":"), ("0.3", "-."))


def scratch_styles(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Colour and line style of every scratch arm (``scratch`` black dashed, then greys)."""
    labels = scratch_labels(df)
    return {label: SCRATCH_STYLES[i % len(SCRATCH_STYLES)] for i, label in enumerate(labels)}


def kind_colors(a: Analysis) -> dict[str, str]:
    """One colour per hierarchy kind, the same in every figure (kinds in the report's order);
    the scratch arms' colours are their lines' (``scratch_styles``)."""
    kinds = kind_order(list(pretrained_arms(a.df)["hierarchy"].unique()))
    palette = [f"C{i}" for i in range(10)]
    scratch = {label: color for label, (color, _) in scratch_styles(a.df).items()}
    return {k: palette[i % len(palette)] for i, k in enumerate(kinds)} | scratch


def _grid(n: int, width: float = 5.0, height: float = 3.8, **kw: object):
    """A figure with ``n`` panels, at most 3 a row; the unused ones are hidden."""
    import matplotlib.pyplot as plt

    cols = min(max(n, 1), 3)
    rows = math.ceil(max(n, 1) / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(width * cols, height * rows + 0.6),
        squeeze=False,
        layout="constrained",
        **kw,
    )
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def _shared_legend(fig: Figure, axes: list, title: str | None = None) -> None:
    """One legend for all panels, below them, so no panel's data sits under it."""
    found: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            found.setdefault(label, handle)
    if found:
        fig.legend(
            list(found.values()),
            list(found),
            loc="outside lower center",
            ncol=min(len(found), 6),
            fontsize=8,
            title=title,
            title_fontsize=8,
        )


def target_classes(a: Analysis) -> float | None:
    """The target level's class count (the reference arm's level the target param names)."""
    if a.claim is not None and np.isfinite(a.claim.target_classes_):
        return float(a.claim.target_classes_)
    rows, _ = est.BaselineGain(metric=a.metric).target_level_rows(a.df)
    return float(rows["num_classes"].median()) if len(rows) else None


def _gain_over_target(a: Analysis) -> pd.DataFrame:
    """The paired gains over the target level (``a.gain.table_``) of levels at or finer than it."""
    t = a.gain.table_
    t = t[t["baseline"] == "target_level"]
    k = target_classes(a)
    return t if k is None else t[t["num_classes"] >= k]


def plot_gain_over_target(a: Analysis) -> Figure | None:
    """Gain over the target level against pretraining classes: levels at or finer than the
    target, one line per kind with its paired 95% band, the zero line, the target marked and
    examples per class on the top axis; one panel per (size, backbone)."""
    t = _gain_over_target(a)
    if t.empty:
        return None
    k_target = target_classes(a)
    panels = sorted(t[["data_fraction", "backbone"]].drop_duplicates().itertuples(index=False))
    fig, axes = _grid(len(panels), sharey=True)
    colors = kind_colors(a)
    for ax, (frac, backbone) in zip(axes, panels, strict=True):
        sub = t[(t["data_fraction"] == frac) & (t["backbone"] == backbone)]
        for kind in kind_order(list(sub["hierarchy"].unique())):
            g = sub[sub["hierarchy"] == kind].sort_values("num_classes")
            ax.plot(g["num_classes"], g["gain"], marker="o", label=kind, color=colors[kind])
            ax.fill_between(
                g["num_classes"], g["ci_low"], g["ci_high"], alpha=0.15, color=colors[kind]
            )
        ax.axhline(0, color="k", lw=0.8)
        if k_target is not None:
            ax.axvline(k_target, color="grey", ls=":", lw=1)
            ax.annotate(
                "target",
                (k_target, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
                color="grey",
            )
        _class_axis(ax, sub["num_classes"])
        ax.set_title(f"{a.size_label} {frac:g} ({backbone})")
        ax.set_xlabel("pretraining classes")
        ax.set_ylabel("gain over target level (error drop)")
        # Examples per class = training examples / classes: the confound, on the top axis.
        n_train = float(a.df.loc[a.df["data_fraction"] == frac, "num_train"].mean())
        if np.isfinite(n_train) and n_train > 0:

            def per_class(x: np.ndarray, n: float = n_train) -> np.ndarray:
                return n / np.clip(x, 1e-9, None)  # an involution: its own inverse

            top = ax.secondary_xaxis("top", functions=(per_class, per_class))
            grid = sorted(n_train / c for c in set(sub["num_classes"]) if c > 0)
            top.set_xticks(grid, [f"{v:.3g}" for v in grid])
            top.xaxis.set_minor_formatter(_null_formatter())
            top.set_xlabel("examples per class", fontsize=8)
            top.tick_params(labelsize=7)
    fig.suptitle(
        "Does finer than the target help? Gain over the target level, paired by seed "
        f"(mean, {1 - ALPHA:.0%} t band; above 0: better than the target)",
        fontsize=10,
    )
    _shared_legend(fig, axes, None)
    return fig


def verdict_contrasts(a: Analysis) -> pd.DataFrame:
    """The contrasts the verdicts state, one row each: ``claim``, ``contrast``, ``estimate``,
    ``ci_low``, ``ci_high``, ``ci_label``, ``p_adj``, ``significant``, ``unit``.

    Read from the same tables, rows and columns as analysis/verdicts.py (the adjusted intervals
    that agree with the adjusted p), so the forest plot shows the numbers the verdicts print.
    """
    diff = "error difference (> 0: the first named is better)"
    kind = primary_kind(a.df)
    parts: list[pd.DataFrame] = []

    def add(t: pd.DataFrame, claim: str, label: pd.Series, value: str, unit: str = diff) -> None:
        if t is None or t.empty:
            return
        parts.append(
            pd.DataFrame(
                {
                    "claim": claim,
                    "contrast": label.to_numpy(),
                    "estimate": t[value].to_numpy(dtype=float),
                    "ci_low": t["ci_low"].to_numpy(dtype=float),
                    "ci_high": t["ci_high"].to_numpy(dtype=float),
                    "ci_label": t["ci_label"].to_numpy() if "ci_label" in t else "95%",
                    "p_adj": t["p_adj"].to_numpy(dtype=float),
                    "unit": unit,
                }
            )
        )

    def where(t: pd.DataFrame) -> pd.Series:
        if "data_fraction" not in t:  # an empty table without columns (e.g. no hard examples)
            return pd.Series(dtype=str)
        return "f=" + t["data_fraction"].map(lambda f: f"{f:g}").astype(str)  # str when empty

    def classes(t: pd.DataFrame, column: str = "num_classes") -> pd.Series:
        if column not in t:  # an empty table without columns (the target level not swept)
            return pd.Series(dtype=str)
        return t[column].map(lambda k: f"{k:g}").astype(str)

    h = a.hard
    add(
        h,
        "fine beats coarse on hard examples",
        "hard: " + classes(h) + " vs target, " + where(h),
        "gain",
    )
    con = a.claim.contrasts_ if a.claim is not None else pd.DataFrame()
    if len(con) and kind is not None:
        con = con[con["hierarchy"] == kind]
        finer = con[con["role"] == "finer vs target"]
        add(
            finer,
            "the paper's claim: finer beats the target",
            classes(finer)
            + " vs target "
            + classes(finer, "reference_classes")
            + ", "
            + where(finer),
            "gain",
        )
        finest = con[con["role"] == "finer vs finest"]
        add(
            finest,
            "the paper's claim: the finest is worse",
            classes(finest)
            + " vs finest "
            + classes(finest, "reference_classes")
            + ", "
            + where(finest),
            "gain",
        )
        coarse = con[con["role"] == "coarser vs target"]
        # The verdict states the target's advantage over a coarser level: the sign flipped.
        flipped = coarse.assign(
            gain=-coarse["gain"], ci_low=-coarse["ci_high"], ci_high=-coarse["ci_low"]
        )
        add(
            flipped,
            "coarser than the target is worse",
            "target vs " + classes(coarse) + ", " + where(coarse),
            "gain",
        )
    pooled, cells = a.comparison.pooled_, a.comparison.cells_
    for first, second in VERDICT_PAIRS:
        pair = f"{first} vs {second}"
        p = pooled[(pooled["a"] == first) & (pooled["b"] == second)] if len(pooled) else pooled
        add(p, f"{first} beats {second}", pair + ", finer pooled, " + where(p), "advantage")
        c = (
            cells[(cells["a"] == first) & (cells["b"] == second) & cells["finer"]]
            if len(cells)
            else cells
        )
        add(
            c,
            f"{first} beats {second}",
            pair + ", " + classes(c) + " classes, " + where(c),
            "advantage",
        )
    slopes = getattr(a.size, "slopes_", pd.DataFrame())
    target_k = a.claim.target_classes_ if a.claim is not None else math.nan
    if len(slopes) and kind is not None:
        s = slopes[(slopes["hierarchy"] == kind) & ~(slopes["num_classes"] <= target_k)]
        add(
            s,
            "finer gains more with more data",
            kind + " " + classes(s) + " classes",
            "slope",
            "slope of the gain over the target on log(size)",
        )
    columns = ["claim", "contrast", "estimate", "ci_low", "ci_high", "ci_label", "p_adj", "unit"]
    if not parts:
        return pd.DataFrame(columns=[*columns, "significant"])
    out = pd.concat(parts, ignore_index=True)[columns]
    return out.assign(significant=out["p_adj"] < ALPHA)


def plot_forest(a: Analysis) -> Figure | None:
    """Forest plot of the verdicts' contrasts with the intervals the verdicts quote (adjusted,
    agreeing with the adjusted p), one panel per unit; filled markers where it is significant."""
    import matplotlib.pyplot as plt

    t = verdict_contrasts(a)
    if t.empty:
        return None
    units = list(dict.fromkeys(t["unit"]))
    heights = [max(len(t[t["unit"] == u]), 1) for u in units]
    fig, axes = plt.subplots(
        len(units),
        1,
        figsize=(12, 0.28 * sum(heights) + 1.4 * len(units)),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"height_ratios": heights},
    )
    claims = list(dict.fromkeys(t["claim"]))
    colors = {c: f"C{i % 10}" for i, c in enumerate(claims)}
    for ax, unit in zip(axes.flat, units, strict=True):
        u = t[t["unit"] == unit].reset_index(drop=True)
        y = np.arange(len(u))[::-1]
        decided = u["significant"].to_numpy(dtype=bool)
        for yi, row, sig in zip(y, u.itertuples(), decided, strict=True):
            color = colors[row.claim]
            if np.isfinite(row.ci_low):
                ax.plot([row.ci_low, row.ci_high], [yi, yi], color=color, lw=1.5)
            ax.plot(row.estimate, yi, "o", color=color, mfc=color if sig else "white", ms=5)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y, u["contrast"], fontsize=7)
        ax.set_xlabel(unit, fontsize=8)
        handles = [
            plt.Line2D([], [], color=colors[c], marker="o", lw=1.5, label=c)
            for c in dict.fromkeys(u["claim"])
        ]
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    labels = ", ".join(str(x) for x in dict.fromkeys(t["ci_label"]))
    fig.suptitle(
        f"Verdict contrasts with the intervals the verdicts quote ({labels}); "
        f"filled: adjusted p < {ALPHA:g}",
        fontsize=9,
    )
    return fig


def plot_gain_vs_size(a: Analysis) -> Figure | None:
    """Gain over the target level against data size (log), one line per level finer than the
    target with its paired band; one panel per (kind, backbone). Needs two sizes."""
    t = _gain_over_target(a)
    k_target = target_classes(a)
    if k_target is not None:
        t = t[t["num_classes"] > k_target]
    if t.empty or t["data_fraction"].nunique() < 2:
        return None
    panels = [
        (kind, b)
        for kind in kind_order(list(t["hierarchy"].unique()))
        for b in sorted(t.loc[t["hierarchy"] == kind, "backbone"].unique())
    ]
    fig, axes = _grid(len(panels), width=4.2, height=3.4, sharey=True)
    cmap = __import__("matplotlib").colormaps["viridis"]
    for ax, (kind, backbone) in zip(axes, panels, strict=True):
        sub = t[(t["hierarchy"] == kind) & (t["backbone"] == backbone)]
        levels = sorted(sub["num_classes"].unique())
        for i, k in enumerate(levels):
            g = sub[sub["num_classes"] == k].sort_values("data_fraction")
            color = cmap(i / max(len(levels) - 1, 1))
            name = g["level_name"].iloc[0] if "level_name" in g else ""
            ax.plot(g["data_fraction"], g["gain"], marker="o", color=color, label=f"{name} ({k:g})")
            ax.fill_between(g["data_fraction"], g["ci_low"], g["ci_high"], color=color, alpha=0.12)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(sorted(sub["data_fraction"].unique()))
        ax.set_xticklabels([f"{f:g}" for f in sorted(sub["data_fraction"].unique())])
        ax.minorticks_off()
        ax.set_title(f"{kind} ({backbone})", fontsize=9)
        ax.set_xlabel(f"{a.size_label} (log)")
        ax.set_ylabel("gain over target level")
    fig.suptitle("Gain of each finer level over the target level against data size", fontsize=10)
    _shared_legend(fig, axes, "level (classes)")
    return fig


def plot_alignment(a: Analysis) -> Figure | None:
    """Gain over the target level against alignment with the target, one panel per data
    fraction, a kind's levels joined in class order (labels: classes), with the paired 95% t
    bars of ``a.gain.table_``; the alignment is the mean over the kind's label functions at
    that level (replicate trees are near-copies)."""
    metric = next((m for m in ("align/ami", "align/cond_entropy", "align/nmi") if m in a.df), None)
    gain = a.gain.table_
    gain = gain[
        (gain["baseline"] == "target_level") & ~gain["hierarchy"].isin(scratch_labels(a.df))
    ]
    if metric is None or gain.empty:
        return None
    keys = ["hierarchy", "num_classes", "data_fraction", "backbone"]
    x = a.df.groupby(keys)[metric].mean().rename("x")
    points = gain.join(x, on=keys).dropna(subset=["x"])
    if points.empty:
        return None
    fractions = sorted(points["data_fraction"].unique())
    fig, axes = _grid(len(fractions), width=5.0, height=3.8, sharey=True)
    colors = kind_colors(a)
    for ax, frac in zip(axes, fractions, strict=True):
        sub = points[points["data_fraction"] == frac]
        for kind in kind_order(list(sub["hierarchy"].unique())):
            g = sub[sub["hierarchy"] == kind].sort_values("num_classes")
            err = [g["gain"] - g["ci_low"], g["ci_high"] - g["gain"]]
            ax.errorbar(
                g["x"],
                g["gain"],
                yerr=err,
                marker="o",
                ms=4,
                capsize=2,
                lw=1.2,
                label=kind,
                color=colors.get(kind),
            )
            for row in g.itertuples(index=False):
                ax.annotate(
                    f"{row.num_classes:g}",
                    (row.x, row.gain),
                    fontsize=6,
                    alpha=0.7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(f"{a.size_label} {frac:g}")
        ax.set_xlabel(metric + (" (lower: more aligned)" if "entropy" in metric else ""))
        ax.set_ylabel("gain over the target level")
    fig.suptitle(
        "Alignment vs transfer: a kind's levels joined (labels: classes; mean over seeds, "
        "paired 95% t bars)",
        fontsize=9,
    )
    _shared_legend(fig, axes, None)
    return fig


def easy_hard_errors(a: Analysis) -> pd.DataFrame:
    """Mean easy and hard error per (kind, level, size, backbone) with t intervals over seeds."""
    cols = ["target_error_easy", "target_error_hard"]
    if any(c not in a.df or a.df[c].notna().sum() == 0 for c in cols):
        return pd.DataFrame()
    keys = ["hierarchy", "num_classes", "data_fraction", "backbone"]
    per_seed = a.df.groupby([*keys, "seed"], dropna=False)[cols].mean().reset_index()
    rows = []
    for cell, g in per_seed.groupby(keys, sort=True):
        for col, split in zip(cols, ("easy", "hard"), strict=True):
            ci = mean_ci(g[col].to_numpy(), ALPHA)
            rows.append((*cell, split, ci.n, ci.mean, ci.low, ci.high))
    return pd.DataFrame(rows, columns=[*keys, "split", "n", "mean", "ci_low", "ci_high"])


def _plot_two_splits(
    a: Analysis, t: pd.DataFrame, splits: tuple[str, str], ylabel: str, title: str
) -> Figure:
    """Per kind, two error lines against pretraining classes (``splits[0]`` solid, ``[1]``
    dashed) with 95% t bars, from a long table (keys, ``split``, ``mean``, ``ci_low``,
    ``ci_high``); one panel per (size, backbone); scratch as horizontal lines."""
    panels = sorted(t[["data_fraction", "backbone"]].drop_duplicates().itertuples(index=False))
    fig, axes = _grid(len(panels), sharey=True)
    colors = kind_colors(a)
    scratch = scratch_labels(a.df)
    for ax, (frac, backbone) in zip(axes, panels, strict=True):
        sub = t[(t["data_fraction"] == frac) & (t["backbone"] == backbone)]
        for kind in kind_order(list(sub["hierarchy"].unique())):
            for split, style in zip(splits, ("-", "--"), strict=True):
                g = sub[(sub["hierarchy"] == kind) & (sub["split"] == split)]
                g = g.sort_values("num_classes")
                if kind in scratch:  # a baseline: one horizontal line per scratch arm
                    ax.axhline(g["mean"].mean(), color=colors[kind], ls=style, lw=1)
                    continue
                err = [g["mean"] - g["ci_low"], g["ci_high"] - g["mean"]]
                ax.errorbar(
                    g["num_classes"],
                    g["mean"],
                    yerr=err,
                    ls=style,
                    marker="o",
                    ms=3,
                    capsize=2,
                    color=colors[kind],
                    label=f"{kind}" if split == splits[0] else None,
                )
        _class_axis(ax, sub["num_classes"])
        ax.set_title(f"{a.size_label} {frac:g} ({backbone})")
        ax.set_xlabel("pretraining classes")
        ax.set_ylabel(ylabel)
    fig.suptitle(title, fontsize=8)
    _shared_legend(fig, axes, None)
    return fig


def plot_easy_hard(a: Analysis) -> Figure | None:
    """Error on easy and on hard test examples against pretraining classes, per kind (solid:
    easy, dashed: hard; 95% t bars over seeds); one panel per (size, backbone)."""
    t = easy_hard_errors(a)
    if t.empty:
        return None
    title = (
        f"Easy (solid) and hard (dashed) test examples: {a.hard_note or 'as logged'}; "
        "black/grey: the scratch arms"
    )
    return _plot_two_splits(a, t, ("easy", "hard"), "target error", title)


def plot_pretraining(a: Analysis) -> Figure | None:
    """Train (solid) and validation (dashed) error on the pretraining labels at the end of
    pretraining, per kind and level (``a.pretraining``); one panel per (size, backbone)."""
    t = a.pretraining
    if t is None or t.empty:
        return None
    keys = ["hierarchy", "num_classes", "data_fraction", "backbone"]
    long = pd.concat(
        [
            t[keys].assign(
                split=split,
                mean=t[f"{split}_error"],
                ci_low=t[f"{split}_ci_low"],
                ci_high=t[f"{split}_ci_high"],
            )
            for split in ("train", "val")
        ],
        ignore_index=True,
    )
    title = (
        "End of pretraining: train (solid) and validation (dashed) error on the pretraining "
        "labels; high train error = not converged in the budget"
    )
    return _plot_two_splits(a, long, ("train", "val"), "pretraining error", title)


def plot_ucurves(a: Analysis) -> Figure:
    """Error against pretraining classes per kind (mean over seeds, 95% t band), one panel per
    (size, backbone), with each scratch arm a horizontal line (``scratch_styles``)."""
    import matplotlib.pyplot as plt

    c = a.ucurve.curve_
    panels = sorted(c[["data_fraction", "backbone"]].drop_duplicates().itertuples(index=False))
    n = max(len(panels), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False, sharey=True)
    scratch = a.df[is_scratch(a.df)]
    styles = scratch_styles(a.df)
    colors = kind_colors(a)
    for ax, (frac, backbone) in zip(axes.flat, panels, strict=False):
        sub = c[(c["data_fraction"] == frac) & (c["backbone"] == backbone)]
        for kind in kind_order(list(sub["hierarchy"].unique())):
            k = sub[sub["hierarchy"] == kind].sort_values("num_classes")
            line = ax.plot(k["num_classes"], k["mean"], marker="o", label=kind, color=colors[kind])[
                0
            ]
            if k["ci_low"].notna().any():
                ax.fill_between(
                    k["num_classes"], k["ci_low"], k["ci_high"], alpha=0.2, color=line.get_color()
                )
        here = scratch[(scratch["data_fraction"] == frac) & (scratch["backbone"] == backbone)]
        for label, (color, style) in styles.items():  # each scratch arm its own line
            s = here.loc[here["hierarchy"] == label, a.metric].dropna()
            if len(s):
                ax.axhline(s.mean(), color=color, ls=style, lw=1, label=label)
            if len(s) > 1:
                half = 1.96 * s.std(ddof=1) / math.sqrt(len(s))
                ax.axhspan(s.mean() - half, s.mean() + half, color=color, alpha=0.08)
        _class_axis(ax, sub["num_classes"])
        ax.set_title(f"{a.size_label} {frac:g} ({backbone})")
        ax.set_xlabel("pretraining classes")
        ax.set_ylabel(a.metric)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("Error vs granularity (mean over seeds, 95% CI band)")
    fig.tight_layout()
    return fig


def plot_heatmap(a: Analysis) -> Figure | None:
    """Mean error over (level, size) of the primary kind, values annotated."""
    import matplotlib.pyplot as plt

    h = a.size.heatmap_
    kind = primary_kind(a.df)
    if h.empty or kind is None:
        return None
    h = h.xs(kind, level="hierarchy")
    fig, ax = plt.subplots(figsize=(1.2 * h.shape[1] + 3, 0.45 * h.shape[0] + 2))
    im = ax.imshow(h.to_numpy(dtype=float), aspect="auto", cmap="viridis_r")
    ax.set_xticks(range(h.shape[1]), [f"{f:g}" for f in h.columns])
    ax.set_yticks(range(h.shape[0]), [f"L{lvl}: {k:g}" for lvl, k in h.index])
    ax.set_xlabel(a.size_label)
    ax.set_ylabel("level: classes")
    values = h.to_numpy(dtype=float)
    middle = np.nanmean(values)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):  # dark text on the light (low-error) cells
            color = "k" if v < middle else "w"
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, label=f"mean {a.metric}")
    ax.set_title(f"{kind}: error over (level, size)")
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[Analysis], Figure | None]] = {
    "gain_over_target": plot_gain_over_target,
    "forest": plot_forest,
    "gain_vs_size": plot_gain_vs_size,
    "alignment": plot_alignment,
    "easy_hard": plot_easy_hard,
    "pretraining": plot_pretraining,
    "ucurves": plot_ucurves,
    "heatmap": plot_heatmap,
}
