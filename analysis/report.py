"""The analysis report: Markdown with tables, verdicts and answers, PNG plots, logged to the sweep's parent run."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import estimators as est
from analysis.adaptive import adaptive_state, cell_seeds_table, design_of, outcome_table
from analysis.cells import cell_table, log_cell_runs, write_views
from analysis.hard_examples import HardMode, derive_hard_examples, easy_hard_table
from analysis.load import find_sweep_run, load_runs
from contracts import ANALYSIS_ARTIFACTS, SCRATCH, VERDICT_PAIRS, kind_order
from sequential import Design

ALL_STATUSES = ("FINISHED", "FAILED", "RUNNING", "KILLED", "SCHEDULED")
ALPHA = 0.05


# ---------------------------------------------------------------- formatting
def _fmt(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.{digits}g}"
    return str(value)


def _ci(mean: float, low: float, high: float) -> str:
    if not np.isfinite(low):
        return f"{_fmt(mean)} (no CI: single seed)"
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"


def _p(p: float) -> str:
    return "p=–" if not np.isfinite(p) else (f"p={p:.2g}" if p >= 1e-4 else "p<1e-4")


def markdown_table(df: pd.DataFrame, columns: list[str] | None = None, max_rows: int = 200) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (floats to 4 significant digits)."""
    if df is None or df.empty:
        return "_(no rows)_\n"
    d = df.reset_index() if not isinstance(df.index, pd.RangeIndex) else df
    if columns is not None:
        d = d[[c for c in columns if c in d]]
    d = d.head(max_rows)
    head = [str(c) for c in d.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in d.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    if len(df) > max_rows:
        lines.append(f"\n_({len(df) - max_rows} more rows not shown)_")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- analysis bundle
@dataclass
class Analysis:
    """Every estimator fitted on one sweep's trials."""

    df: pd.DataFrame
    status_counts: dict[str, int]
    ucurve: est.UCurve
    gain: est.BaselineGain
    size: est.SizeGranularity
    comparison: est.HierarchyComparison
    alignment: est.AlignmentStudy
    hard: pd.DataFrame
    metric: str
    failures: pd.Series  # failure reason -> count, over failed trial runs
    hard_note: str = ""  # how hard examples are defined (analysis.hard_examples)
    easy_hard: pd.DataFrame | None = None  # every arm's easy / hard error
    design: Design | None = None  # adaptive replicates (the parent run's `granularity.replicates`)


def analyze(
    df: pd.DataFrame,
    *,
    metric: str = "target_error",
    n_boot: int = 2000,
    status_counts: dict[str, int] | None = None,
    failures: pd.Series | None = None,
    random_state: int = 0,
    hard_examples: HardMode = "auto",
) -> Analysis:
    """Fit all estimators on a trial table (finished trials).

    `hard_examples`: where `target_error_hard` comes from ("dataset": the
    trial's own hard split; "target_level": the mistakes of the other seeds'
    target-level models, analysis.hard_examples; "auto": the first available).
    """
    if df.empty:
        raise ValueError(
            "No finished trial runs to analyse (tag granularity.role=trial, status FINISHED)"
        )
    if metric not in df:
        raise ValueError(
            f"Trials have no metric {metric!r}; metrics present: "
            f"{sorted(c for c in df.columns if '/' in c or c.startswith('target_'))}"
        )
    kw = {"metric": metric, "alpha": ALPHA}
    target_rows, _ = est.BaselineGain(**kw).target_level_rows(df)
    df, hard_note = derive_hard_examples(df, target_rows, mode=hard_examples)
    return Analysis(
        df=df,
        status_counts=status_counts or {"FINISHED": len(df)},
        ucurve=est.UCurve(n_boot=n_boot, random_state=random_state, **kw).fit(df),
        gain=est.BaselineGain(**kw).fit(df),
        size=est.SizeGranularity(n_boot=n_boot, random_state=random_state, **kw).fit(df),
        comparison=est.HierarchyComparison(**kw).fit(df),
        alignment=est.AlignmentStudy(n_boot=n_boot, random_state=random_state, **kw).fit(df),
        hard=est.hard_example_verdict(df, alpha=ALPHA),
        metric=metric,
        failures=failures if failures is not None else pd.Series(dtype=int),
        hard_note=hard_note,
        easy_hard=easy_hard_table(df),
    )


# ---------------------------------------------------------------- verdicts
def _primary_kind(df: pd.DataFrame) -> str | None:
    kinds = [k for k in df["hierarchy"].unique() if k != SCRATCH]
    if not kinds:
        return None
    return "manual" if "manual" in kinds else kind_order(kinds)[0]


def _verdict_hard(a: Analysis) -> tuple[str, str]:
    name = "Fine beats coarse on hard examples (`target_error_hard`)"
    t = a.hard
    if t.empty:
        lacks = (
            f"the metric target_error_hard ({a.hard_note})"
            if "target_error_hard" not in a.df or a.df["target_error_hard"].notna().sum() == 0
            else "a manual target-level arm"
        )
        return name, f"**not answerable from this sweep**: it lacks {lacks}."
    sig_pos = t[(t["gain"] > 0) & (t["p_holm"] < ALPHA)]
    sig_neg = t[(t["gain"] < 0) & (t["p_holm"] < ALPHA)]
    best = t.loc[t["gain"].idxmax()]
    evidence = (
        f"best finer level {best['level_name']} ({_fmt(best['num_classes'])} classes, fraction "
        f"{_fmt(best['data_fraction'])}): hard error lower than the target level's by "
        f"{_ci(best['gain'], best['ci_low'], best['ci_high'])} (paired t over {best['n']} seeds, "
        f"Holm {_p(best['p_holm'])} over {len(t)} finer levels x sizes)"
    )
    if len(sig_pos):
        return name, f"**supported** in {len(sig_pos)}/{len(t)} cells; {evidence}."
    if len(sig_neg):
        return (
            name,
            f"**contradicted**: finer levels are worse on hard examples in {len(sig_neg)} cells; {evidence}.",
        )
    return name, f"**not supported** (no significant difference); {evidence}."


def _verdict_u(a: Analysis) -> tuple[str, str]:
    name = "U-shaped error over granularity (two-lines test)"
    kind = _primary_kind(a.df)
    r = a.ucurve.results_
    if kind is None or r.empty:
        return name, "**not answerable from this sweep**: it lacks pretraining arms."
    r = r[r["hierarchy"] == kind]
    if (r["n_levels"] < 4).all():
        return (
            name,
            f"**not answerable from this sweep**: it lacks at least 4 granularity levels of {kind}.",
        )
    parts = [
        f"fraction {_fmt(x.data_fraction)}: optimum {_ci(x.optimum, x.optimum_ci_low, x.optimum_ci_high)} "
        f"classes; slopes {_fmt(x.slope_low)} ({_p(x.p_low)}) / {_fmt(x.slope_high)} ({_p(x.p_high)})"
        for x in r.itertuples()
    ]
    n_u = int(r["is_u"].sum())
    verdict = "supported" if n_u == len(r) else ("partly supported" if n_u else "not supported")
    return name, f"**{verdict}** for {kind}: {n_u}/{len(r)} curves pass; " + "; ".join(parts) + "."


def _verdict_pair(a: Analysis, first: str, second: str) -> tuple[str, str]:
    name = f"{first} beats {second} at matched class counts"
    kinds = set(a.df["hierarchy"])
    missing = [k for k in (first, second) if k not in kinds]
    if missing:
        return (
            name,
            f"**not answerable from this sweep**: it lacks the {' and '.join(missing)} arm(s).",
        )
    p = a.comparison.pooled_
    p = p[(p["a"] == first) & (p["b"] == second)] if not p.empty else p
    if p.empty:
        return (
            name,
            "**not answerable from this sweep**: it lacks matched class counts with different label functions.",
        )
    parts = [
        f"fraction {_fmt(x.data_fraction)}: error lower by {_ci(x.advantage, x.ci_low, x.ci_high)} "
        f"(mean over {x.n_class_counts} matched class counts, d_z={_fmt(x.effect_size, 3)}, "
        f"Holm {_p(x.p_holm)}, {x.n} seeds)"
        for x in p.itertuples()
    ]
    pos = int(((p["advantage"] > 0) & (p["p_holm"] < ALPHA)).sum())
    neg = int(((p["advantage"] < 0) & (p["p_holm"] < ALPHA)).sum())
    if pos == len(p):
        verdict = "supported"
    elif pos:
        verdict = "partly supported"
    elif neg:
        verdict = "contradicted"
    else:
        verdict = "not supported (no significant difference)"
    return name, f"**{verdict}**: " + "; ".join(parts) + "."


def _verdict_size(a: Analysis) -> tuple[str, str]:
    name = "The optimal granularity is coarser with less data"
    t = a.size.trend_
    kind = _primary_kind(a.df)
    if t.empty or kind is None or (t["n_fractions"] < 2).all():
        return name, "**not answerable from this sweep**: it lacks at least two data fractions."
    t = t[t["hierarchy"] == kind]
    parts, verdicts = [], []
    for x in t.itertuples():
        opt = a.size.optima_
        opt = opt[(opt["hierarchy"] == kind) & (opt["backbone"] == x.backbone)].sort_values(
            "data_fraction"
        )
        lo, hi = opt.iloc[0], opt.iloc[-1]
        parts.append(
            f"{kind}/{x.backbone}: optimum {_ci(lo.optimum, lo.optimum_ci_low, lo.optimum_ci_high)} classes at "
            f"fraction {_fmt(lo.data_fraction)} vs {_ci(hi.optimum, hi.optimum_ci_low, hi.optimum_ci_high)} at "
            f"{_fmt(hi.data_fraction)}; log-ratio {_ci(x.log_shift, x.log_shift_ci_low, x.log_shift_ci_high)}"
        )
        verdicts.append(
            "supported"
            if x.moves and x.log_shift > 0
            else "contradicted"
            if x.moves
            else "not supported"
        )
    verdict = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
    if verdict == "not supported":
        verdict = "not supported (no detectable move: the CI of the shift covers 0)"
    return name, f"**{verdict}**: " + "; ".join(parts) + "."


# ---------------------------------------------------------------- open questions
def _answer_size(a: Analysis) -> str:
    t = a.size.trend_
    if t.empty or (t["n_fractions"] < 2).all():
        return "Not answerable from this sweep: it lacks a second data fraction (add sizes to `data_fractions`)."
    lines = []
    for x in t.itertuples():
        if not np.isfinite(x.slope_ci_low):
            lines.append(
                f"{x.hierarchy}/{x.backbone}: slope of log optimum on log size {_fmt(x.slope)} "
                "(single seed: no CI, no conclusion)."
            )
            continue
        how = (
            "the optimum moves to finer labels as data grows"
            if x.moves and x.log_shift > 0
            else "the optimum moves to coarser labels as data grows"
            if x.moves
            else "no detectable move of the optimum with size"
        )
        lines.append(
            f"{x.hierarchy}/{x.backbone}: {how}; d log(optimal classes) / d log(size) = "
            f"{_ci(x.slope, x.slope_ci_low, x.slope_ci_high)}."
        )
    return " ".join(lines)


def _answer_structure(a: Analysis) -> str:
    p = a.comparison.pooled_
    if p.empty:
        return (
            "Not answerable from this sweep: it lacks two hierarchy kinds at matched class counts "
            "(add `random` and/or `cluster_*` kinds)."
        )
    sig = p[p["p_holm"] < ALPHA]
    if sig.empty:
        return (
            f"No pair of hierarchy kinds differs significantly at matched class counts "
            f"({len(p)} Holm-corrected comparisons); within this sweep's precision the number of "
            "classes, not the structure, carries the effect."
        )
    parts = [
        f"{x.a} vs {x.b} (fraction {_fmt(x.data_fraction)}): {x.a} error lower by "
        f"{_ci(x.advantage, x.ci_low, x.ci_high)}, Holm {_p(x.p_holm)}"
        for x in sig.itertuples()
    ]
    return (
        "Yes, structure matters at the same number of classes: "
        + "; ".join(parts)
        + f" ({len(sig)} of {len(p)} comparisons significant)."
    )


def _answer_alignment(a: Analysis) -> str:
    r = a.alignment.results_
    if r.empty or not r["rho"].notna().any():
        return (
            "Not answerable from this sweep: it lacks enough label functions with varied alignment "
            "(e.g. a `perturbed` hierarchy at several p, or several kinds with align/* metrics)."
        )
    parts = []
    for x in r[r["rho"].notna()].itertuples():
        parts.append(
            f"{x.metric} (fraction {_fmt(x.data_fraction)}, {x.n} label functions): Spearman rho with "
            f"{a.alignment.outcome_} {_ci(x.rho, x.ci_low, x.ci_high)} ({_p(x.pvalue)}); controlling "
            f"for log classes {_ci(x.partial_rho, x.partial_ci_low, x.partial_ci_high)} "
            f"({_p(x.partial_pvalue)})"
        )
    detected = r[r["detected"]]
    head = (
        "Transfer gain tracks alignment"
        if len(detected)
        else "No detectable association between alignment and transfer gain"
    )
    return head + ": " + "; ".join(parts) + ". (Lower `align/cond_entropy` means more aligned.)"


# ---------------------------------------------------------------- plots
def _plot_ucurves(a: Analysis, path: Path) -> None:
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


def _plot_heatmap(a: Analysis, path: Path) -> bool:
    import matplotlib.pyplot as plt

    h = a.size.heatmap_
    kind = _primary_kind(a.df)
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


def _plot_alignment(a: Analysis, path: Path) -> bool:
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


# ---------------------------------------------------------------- the report
def render_markdown(a: Analysis, experiment: str, plots: dict[str, bool]) -> str:
    """The report's Markdown text: one section after another, top to bottom."""
    out = _section_sweep(a, experiment)
    out += _section_verdicts(a)
    out += _section_questions(a)
    out += _section_ucurves(a, plots)
    out += _section_gain(a)
    out += _section_size(a, plots)
    out += _section_kinds(a)
    out += _section_alignment(a, plots)
    out += _section_adaptive(a)
    return "\n".join(out) + "\n"


def _section_sweep(a: Analysis, experiment: str) -> list[str]:
    """Title and what the sweep holds: runs, kinds, fractions, backbones, seeds, failures."""
    df = a.df
    seeds = sorted(df["seed"].dropna().unique())
    kinds = kind_order(list(df["hierarchy"].unique()))
    counts = ", ".join(f"{v} {k.lower()}" for k, v in sorted(a.status_counts.items()))
    out = [
        f"# Granularity sweep report: {experiment}\n",
        f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} from MLflow. "
        f"Metric: `{a.metric}` (lower is better).\n",
        "## Sweep\n",
        f"- trial runs: {counts}; analysed: {len(df)} finished "
        f"({a.ucurve.n_dropped_} more dropped for a NaN/inf `{a.metric}`)",
        f"- hierarchy kinds: {', '.join(kinds)}",
        f"- data fractions: {', '.join(_fmt(f) for f in sorted(df['data_fraction'].dropna().unique()))}",
        f"- backbones: {', '.join(map(str, sorted(df['backbone'].dropna().unique())))}"
        if "backbone" in df
        else "- backbones: (not logged)",
        f"- seeds (paired replicates): {len(seeds)}",
    ]
    failed = a.failures
    if len(failed):
        reasons = "; ".join(f"{n} x {r}" for r, n in failed.items())
        out.append(
            f"- failed trials (not analysed; `granularity run` again retries them): {reasons}"
        )
    if len(seeds) < 2:
        out.append(
            "- **single seed: no confidence intervals or tests are possible; every number below is one run.**"
        )
    out.append("")
    return out


def _section_verdicts(a: Analysis) -> list[str]:
    """One line per claim: the verdict and its evidence."""
    verdicts = [
        _verdict_hard(a),
        _verdict_u(a),
        *(_verdict_pair(a, aligned, control) for aligned, control in VERDICT_PAIRS),
        _verdict_size(a),
    ]
    out = ["## Verdicts\n", "| claim | verdict and evidence |", "|---|---|"]
    out += [f"| {name} | {text} |" for name, text in verdicts]
    return out


def _section_questions(a: Analysis) -> list[str]:
    """The three open questions' answers."""
    out: list[str] = [
        "",
        "## The three open questions\n",
        f"1. **How do data size and granularity interact?** {_answer_size(a)}",
        f"2. **Does the hierarchy's structure matter, or only its number of classes?** {_answer_structure(a)}",
        f"3. **How much alignment is needed?** {_answer_alignment(a)}",
        "",
    ]
    return out


def _section_ucurves(a: Analysis, plots: dict[str, bool]) -> list[str]:
    """U-curve optima and tests, and the mean error per level."""
    out: list[str] = ["## U-curves\n"]
    if plots.get("ucurves"):
        out.append("![U-curves](ucurves.png)\n")
    out += [
        "Optimum: grid minimum refined by a local parabola in log(classes); 95% CI: expanded-percentile "
        "bootstrap over seeds (whole seeds resampled, so levels stay paired). U test: Simonsohn's (2018) "
        "two-lines test with seed fixed effects (both slopes significant with opposite signs).\n",
        markdown_table(
            a.ucurve.results_,
            [
                "hierarchy",
                "data_fraction",
                "backbone",
                "n_seeds",
                "n_levels",
                "optimum",
                "optimum_ci_low",
                "optimum_ci_high",
                "break_classes",
                "slope_low",
                "p_low",
                "slope_high",
                "p_high",
                "is_u",
                "note",
            ],
        ),
        "### Mean error per level (95% t interval over seeds; examples per class is the known confound)\n",
        markdown_table(
            a.ucurve.curve_,
            [
                "hierarchy",
                "data_fraction",
                "backbone",
                "level",
                "level_name",
                "num_classes",
                "n",
                "mean",
                "ci_low",
                "ci_high",
                "examples_per_class",
            ],
        ),
    ]
    return out


def _section_gain(a: Analysis) -> list[str]:
    """Paired gains over scratch and the target level; hard examples where logged."""
    out: list[str] = [
        "## Gain over the baselines\n",
        "gain = baseline error - arm error, paired by seed (positive: the pretraining helps); 95% t "
        f"interval, paired t test. Target level: {a.gain.target_level_}.\n",
        markdown_table(
            a.gain.table_,
            [
                "baseline",
                "hierarchy",
                "level_name",
                "num_classes",
                "data_fraction",
                "backbone",
                "n",
                "gain",
                "ci_low",
                "ci_high",
                "pvalue",
                "relative_gain",
                "note",
            ],
        ),
    ]
    if not a.hard.empty:
        out += [
            "### Hard examples: finer levels vs the target level (`target_error_hard`)\n",
            f"Definition: {a.hard_note}.\n",
            markdown_table(
                a.hard,
                [
                    "level_name",
                    "num_classes",
                    "data_fraction",
                    "backbone",
                    "n",
                    "gain",
                    "ci_low",
                    "ci_high",
                    "pvalue",
                    "p_holm",
                ],
            ),
        ]
    if a.easy_hard is not None and not a.easy_hard.empty:
        out += [
            "### Every arm on easy and hard examples (mean over seeds)\n",
            markdown_table(a.easy_hard),
        ]
    return out


def _section_size(a: Analysis, plots: dict[str, bool]) -> list[str]:
    """Size x granularity: optima per data fraction, their trend, heatmaps."""
    out: list[str] = ["## Size x granularity\n"]
    if plots.get("heatmap"):
        out.append("![size x level heatmap](heatmap.png)\n")
    out += [
        "Optimum per data fraction (joint seed bootstrap across fractions: a seed's nested subsets stay "
        "together):\n",
        markdown_table(a.size.optima_),
        "Trend (slope of log optimum on log fraction; log_shift = log optimum at the largest minus the "
        "smallest fraction):\n",
        markdown_table(a.size.trend_),
        "Mean error over (level, data fraction):\n",
        markdown_table(a.size.heatmap_),
        "Examples per pretraining class over (level, data fraction):\n",
        markdown_table(a.size.examples_per_class_),
    ]
    return out


def _section_kinds(a: Analysis) -> list[str]:
    """Hierarchy kinds compared at matched class counts."""
    out: list[str] = [
        "## Hierarchy kinds at matched class counts\n",
        "advantage = error(b) - error(a) paired by seed (positive: a is better); cells where both kinds "
        "have the same label function are skipped. Effect size: Cohen's d_z. p-values: paired t, Holm-"
        "corrected within each table.\n",
        "Pooled over matched class counts:\n",
        markdown_table(a.comparison.pooled_),
        "Per class count:\n",
        markdown_table(a.comparison.cells_),
    ]
    return out


def _section_alignment(a: Analysis, plots: dict[str, bool]) -> list[str]:
    """Alignment vs transfer: rank correlations and their points."""
    out: list[str] = ["## Alignment vs transfer\n"]
    if plots.get("alignment"):
        out.append("![alignment](alignment.png)\n")
    out += [
        f"Outcome: {a.alignment.outcome_} per label function (mean over seeds). Spearman rho with an "
        "expanded-percentile bootstrap CI over label functions; partial rho controls for log(classes).\n",
        markdown_table(a.alignment.results_),
        "Points:\n",
        markdown_table(a.alignment.points_),
    ]
    return out


def _section_adaptive(a: Analysis) -> list[str]:
    """Adaptive replicates: the method, and per comparison and cell the seeds run and why it stopped."""
    if a.design is None:
        return []
    d = a.design
    state = adaptive_state(a.df, d, a.metric)
    return [
        "\n## Adaptive replicates\n",
        f"Seeds were added in rounds (looks at {d.looks()} seeds per cell; rules: "
        f"{', '.join(d.stop_when)}; margin {d.margin:g}). Intervals below are valid under this "
        f"optional stopping: {d.method()}; family-wise alpha {d.alpha:g} per comparison over all "
        "looks, not adjusted across comparisons (the sections above use ordinary fixed-n "
        "intervals, Holm-adjusted for kind pairs; peeking makes those too narrow).\n",
        markdown_table(outcome_table(state)),
        "Seeds per cell:\n",
        markdown_table(cell_seeds_table(state)),
    ]


def write_report(
    experiment: str,
    tracking_uri: str = "sqlite:///mlflow.db",
    out_dir: str | Path = "report",
    *,
    metric: str = "target_error",
    n_boot: int = 2000,
    log_artifacts: bool = True,
    hard_examples: HardMode = "auto",
) -> Path:
    """Analyse a sweep and write ``report.md``, ``report.html`` + PNG plots to ``out_dir``.

    Returns the report's path. When there is a sweep parent run (tag
    ``granularity.role=sweep``) and ``log_artifacts`` is true, the files are
    logged to it (folder ``analysis``), every cell gets its summary run
    under it and the experiment gets the UI's shared views (analysis/cells.py). Raises ``ExperimentNotFoundError`` (a LookupError)
    for an unknown experiment and ValueError when it holds no finished trials.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    every = load_runs(experiment, tracking_uri, statuses=ALL_STATUSES)
    counts = every["status"].value_counts().to_dict() if len(every) else {}
    df = every[every["status"] == "FINISHED"].reset_index(drop=True)
    bad = every[every["status"] == "FAILED"]
    failures = bad["failure"].fillna("no reason logged").str.slice(0, 120).value_counts()
    a = analyze(
        df,
        metric=metric,
        n_boot=n_boot,
        status_counts=counts,
        failures=failures,
        hard_examples=hard_examples,
    )
    parent_id = find_sweep_run(experiment, tracking_uri)
    if parent_id is not None:
        from mlflow.tracking import MlflowClient

        a.design = design_of(MlflowClient(tracking_uri).get_run(parent_id).data.tags)
    plots = {"ucurves": True}
    _plot_ucurves(a, out / "ucurves.png")
    plots["heatmap"] = _plot_heatmap(a, out / "heatmap.png")
    plots["alignment"] = _plot_alignment(a, out / "alignment.png")
    report = out / "report.md"
    text = render_markdown(a, experiment, plots)
    report.write_text(text, encoding="utf-8")
    (out / "report.html").write_text(render_html(text, out, experiment), encoding="utf-8")
    if log_artifacts:
        parent = parent_id
        if parent is not None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri)
            client.log_artifacts(parent, str(out), artifact_path=ANALYSIS_ARTIFACTS)
            experiment_id = client.get_run(parent).info.experiment_id
            log_cell_runs(
                cell_table(a.df, metric, alpha=ALPHA),
                tracking_uri=tracking_uri,
                experiment_id=experiment_id,
                parent_run_id=parent,
            )
            write_views(tracking_uri=tracking_uri, experiment_id=experiment_id, metric=metric)
    return report


def render_html(markdown_text: str, folder: Path, title: str) -> str:
    """The report as one self-contained HTML page (plots inlined), for MLflow's artifact viewer."""
    import base64

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    for png in sorted(folder.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        body = body.replace(f'src="{png.name}"', f'src="data:image/png;base64,{data}"')
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
