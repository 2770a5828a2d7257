"""The report's figures: PNG plots of a fitted Analysis."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from analysis.fit import Analysis
from analysis.verdicts import primary_kind
from contracts import SCRATCH, kind_order


def write_figures(a: Analysis, out: Path) -> dict[str, bool]:
    """Every figure as ``out/<name>.png``; returns which were drawn (a sweep may lack the data)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    plot_ucurves(a, out / "ucurves.png")
    return {
        "ucurves": True,
        "heatmap": plot_heatmap(a, out / "heatmap.png"),
        "alignment": plot_alignment(a, out / "alignment.png"),
    }


def plot_ucurves(a: Analysis, path: Path) -> None:
    import matplotlib.pyplot as plt

    c = a.ucurve.curve_
    panels = sorted(c[["data_fraction", "backbone"]].drop_duplicates().itertuples(index=False))
    n = max(len(panels), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False, sharey=True)
    scratch = a.df[a.df["hierarchy"] == SCRATCH]
    for ax, (frac, backbone) in zip(axes.flat, panels, strict=False):
        sub = c[(c["data_fraction"] == frac) & (c["backbone"] == backbone)]
        for kind in kind_order(list(sub["hierarchy"].unique())):
            k = sub[sub["hierarchy"] == kind].sort_values("num_classes")
            line = ax.plot(k["num_classes"], k["mean"], marker="o", label=kind)[0]
            if k["ci_low"].notna().any():
                ax.fill_between(
                    k["num_classes"], k["ci_low"], k["ci_high"], alpha=0.2, color=line.get_color()
                )
        s = scratch[(scratch["data_fraction"] == frac) & (scratch["backbone"] == backbone)][
            a.metric
        ].dropna()
        if len(s):
            ax.axhline(s.mean(), color="k", ls="--", lw=1, label="scratch")
            if len(s) > 1:
                half = 1.96 * s.std(ddof=1) / math.sqrt(len(s))
                ax.axhspan(s.mean() - half, s.mean() + half, color="k", alpha=0.08)
        ax.set_xscale("log")
        ax.set_title(f"data fraction {frac:g} ({backbone})")
        ax.set_xlabel("pretraining classes")
        ax.set_ylabel(a.metric)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("Error vs granularity (mean over seeds, 95% CI band)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_heatmap(a: Analysis, path: Path) -> bool:
    import matplotlib.pyplot as plt

    h = a.size.heatmap_
    kind = primary_kind(a.df)
    if h.empty or kind is None:
        return False
    h = h.xs(kind, level="hierarchy")
    fig, ax = plt.subplots(figsize=(1.2 * h.shape[1] + 3, 0.45 * h.shape[0] + 2))
    im = ax.imshow(h.to_numpy(dtype=float), aspect="auto", cmap="viridis_r")
    ax.set_xticks(range(h.shape[1]), [f"{f:g}" for f in h.columns])
    ax.set_yticks(range(h.shape[0]), [f"L{lvl}: {k:g}" for lvl, k in h.index])
    ax.set_xlabel("data fraction")
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_alignment(a: Analysis, path: Path) -> bool:
    import matplotlib.pyplot as plt

    pts, metrics = a.alignment.points_, a.alignment.metrics_
    if pts.empty or not metrics:
        return False
    metrics = [
        m for m in ("align/cond_entropy", "align/nmi", "align/purity") if m in metrics
    ] or metrics[:3]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.8), squeeze=False)
    for ax, m in zip(axes.flat, metrics, strict=True):
        for kind in kind_order(list(pts["hierarchy"].unique())):
            k = pts[pts["hierarchy"] == kind]
            ax.scatter(
                k[m],
                k["gain"],
                s=12 + 6 * np.log2(k["num_classes"].clip(lower=1)),
                label=kind,
                alpha=0.7,
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel(m)
        ax.set_ylabel(a.alignment.outcome_)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Alignment vs transfer (one point per label function and size; size ~ log classes)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
