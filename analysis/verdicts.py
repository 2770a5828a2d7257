"""The report's verdicts on the paper's claims and answers to its open questions, as sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.fit import ALPHA, Analysis
from analysis.formatting import fmt, fmt_ci, fmt_p
from contracts import SCRATCH, VERDICT_PAIRS, kind_order


def primary_kind(df: pd.DataFrame) -> str | None:
    """The hierarchy kind the single-kind verdicts speak about: manual if present."""
    kinds = [k for k in df["hierarchy"].unique() if k != SCRATCH]
    if not kinds:
        return None
    return "manual" if "manual" in kinds else kind_order(kinds)[0]


def verdicts(a: Analysis) -> list[tuple[str, str]]:
    """One ``(claim, verdict and evidence)`` per claim, in the report's order."""
    return [
        _verdict_hard(a),
        _verdict_u(a),
        *(_verdict_pair(a, aligned, control) for aligned, control in VERDICT_PAIRS),
        _verdict_size(a),
    ]


def answers(a: Analysis) -> list[tuple[str, str]]:
    """One ``(question, answer)`` per open question, in the report's order."""
    return [
        ("How do data size and granularity interact?", _answer_size(a)),
        (
            "Does the hierarchy's structure matter, or only its number of classes?",
            _answer_structure(a),
        ),
        ("How much alignment is needed?", _answer_alignment(a)),
    ]


# ---------------------------------------------------------------- verdicts
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
        f"best finer level {best['level_name']} ({fmt(best['num_classes'])} classes, fraction "
        f"{fmt(best['data_fraction'])}): hard error lower than the target level's by "
        f"{fmt_ci(best['gain'], best['ci_low'], best['ci_high'])} (paired t over {best['n']} seeds, "
        f"Holm {fmt_p(best['p_holm'])} over {len(t)} finer levels x sizes)"
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
    kind = primary_kind(a.df)
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
        f"fraction {fmt(x.data_fraction)}: optimum {fmt_ci(x.optimum, x.optimum_ci_low, x.optimum_ci_high)} "
        f"classes; slopes {fmt(x.slope_low)} ({fmt_p(x.p_low)}) / {fmt(x.slope_high)} ({fmt_p(x.p_high)})"
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
        f"fraction {fmt(x.data_fraction)}: error lower by {fmt_ci(x.advantage, x.ci_low, x.ci_high)} "
        f"(mean over {x.n_class_counts} matched class counts, d_z={fmt(x.effect_size, 3)}, "
        f"Holm {fmt_p(x.p_holm)}, {x.n} seeds)"
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
    kind = primary_kind(a.df)
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
            f"{kind}/{x.backbone}: optimum {fmt_ci(lo.optimum, lo.optimum_ci_low, lo.optimum_ci_high)} classes at "
            f"fraction {fmt(lo.data_fraction)} vs {fmt_ci(hi.optimum, hi.optimum_ci_low, hi.optimum_ci_high)} at "
            f"{fmt(hi.data_fraction)}; log-ratio {fmt_ci(x.log_shift, x.log_shift_ci_low, x.log_shift_ci_high)}"
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
                f"{x.hierarchy}/{x.backbone}: slope of log optimum on log size {fmt(x.slope)} "
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
            f"{fmt_ci(x.slope, x.slope_ci_low, x.slope_ci_high)}."
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
        f"{x.a} vs {x.b} (fraction {fmt(x.data_fraction)}): {x.a} error lower by "
        f"{fmt_ci(x.advantage, x.ci_low, x.ci_high)}, Holm {fmt_p(x.p_holm)}"
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
            f"{x.metric} (fraction {fmt(x.data_fraction)}, {x.n} label functions): Spearman rho with "
            f"{a.alignment.outcome_} {fmt_ci(x.rho, x.ci_low, x.ci_high)} ({fmt_p(x.pvalue)}); controlling "
            f"for log classes {fmt_ci(x.partial_rho, x.partial_ci_low, x.partial_ci_high)} "
            f"({fmt_p(x.partial_pvalue)})"
        )
    detected = r[r["detected"]]
    head = (
        "Transfer gain tracks alignment"
        if len(detected)
        else "No detectable association between alignment and transfer gain"
    )
    return head + ": " + "; ".join(parts) + ". (Lower `align/cond_entropy` means more aligned.)"
