"""The report's verdicts on the paper's claims and answers to its open questions, as sentences.

Every verdict reads an adjusted p-value and quotes the interval that agrees with it
(named by its ``ci_label``): an interval excludes 0 exactly when the verdict calls
the effect significant. Verdict words: ``supported``, ``partly supported``,
``mixed`` (significant effects of both signs), ``not supported``, ``contradicted``,
``not answerable from this sweep``.

Interface for rendering (the ``Analysis`` of analysis/fit.py; DataFrame columns):

- ``a.claim.contrasts_`` (analysis.claim.PaperClaim): hierarchy, data_fraction,
  backbone, role ("finer vs target" | "finer vs finest" | "coarser vs target"),
  reference_classes, level, level_name, num_classes, n, gain (reference error -
  level error; > 0: the level is better), sd, ci_low, ci_high, ci_label,
  ci_low_unadjusted, ci_high_unadjusted, pvalue, p_adj, family_size, significant.
  Forest plot: one row per contrast, with these intervals.
- ``a.claim.results_``: hierarchy, data_fraction, backbone, target_classes, n_finer,
  best_finer_classes, finer_beats_target, finer_worse_count, finest_worse,
  claim_level_classes, coarser_worse_count, verdict, note.
- ``a.ucurve.curve_``: per level (all levels): num_classes, n, mean, sd, ci_low,
  ci_high, examples_per_class. ``a.ucurve.argmin_``: per level at or finer than the
  target: p_argmin, in_best_set. ``a.ucurve.results_``: domain, optimum_level,
  argmin_classes, optimum_error, p_argmin, best_set, best_set_low, best_set_high,
  optimum, interpolated, curvature_p, optimum_ci_low, optimum_ci_high,
  break_classes, slope_low, p_low, slope_high, p_high, is_u, note.
- ``a.gain.table_`` (BaselineGain): gain over scratch / the target level per arm
  (unadjusted 95% t intervals, descriptive); figure "gain over the target level
  against classes" = rows with baseline == "target_level" and num_classes >= target.
- ``a.comparison.cells_``: a, b, data_fraction, backbone, num_classes, finer, n,
  advantage, sd, ci_low, ci_high, ci_label, ci_low_unadjusted, ci_high_unadjusted,
  effect_size, pvalue, p_adj, p_holm, family_size, note. ``pooled_``: the same with
  n_class_counts instead of num_classes/finer (counts finer than the target only).
  ``interaction_``: a, b, data_fraction, backbone, n_class_counts, n_seeds, f_stat,
  df_num, df_den, pvalue, p_adj.
- ``a.size.slopes_``: hierarchy, backbone, level, num_classes, n, slope, ci_low,
  ci_high, ci_label, pvalue, p_adj, gain_low, gain_high, crossover_fraction,
  crossover, n_fractions, note. ``a.size.argmin_``: as ``a.ucurve.argmin_``.
- ``a.alignment.seed_model_``: data_fraction, backbone, metric, n_obs, n_seeds,
  n_cells, slope, ci_low, ci_high, ci_label, pvalue, p_adj, model, note.
- ``a.hard``: finer levels vs the target level on target_error_hard, columns as
  ``a.gain.table_`` plus ci_label, p_adj, p_holm; ``a.hard_note`` states the set's size.

Longer than 400 lines because each verdict and answer is one function over the same interval-
and-adjusted-p helpers, so every sentence follows one rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.fit import ALPHA, Analysis
from analysis.formatting import fmt, fmt_ci, fmt_p, fmt_size
from analysis.trial_table import pretrained_arms
from contracts import VERDICT_PAIRS, kind_order

NOT_ANSWERABLE = "**not answerable from this sweep**"


def primary_kind(df: pd.DataFrame) -> str | None:
    """The hierarchy kind the single-kind verdicts speak about: manual if present."""
    kinds = list(pretrained_arms(df)["hierarchy"].unique())
    if not kinds:
        return None
    return "manual" if "manual" in kinds else kind_order(kinds)[0]


def verdicts(a: Analysis) -> list[tuple[str, str]]:
    """One ``(claim, verdict and evidence)`` per claim, in the report's order."""
    return [
        _verdict_hard(a),
        _verdict_claim(a),
        _verdict_u(a),
        _row_coarse(a),
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


# ---------------------------------------------------------------- helpers
def signed_verdict(n_pos: int, n_neg: int, n: int) -> str:
    """The verdict word from significant positive / negative effects among ``n`` tests."""
    if n_pos and n_neg:
        return "mixed"
    if n_pos:
        return "supported" if n_pos == n else "partly supported"
    if n_neg:
        return "contradicted"
    return "not supported"


def combine(words: list[str]) -> str:
    """One verdict over several curves (fractions, backbones)."""
    if not words:
        return "not supported"
    if len(set(words)) == 1:
        return words[0]
    positive = any(w in ("supported", "partly supported") for w in words)
    if positive and ("contradicted" in words or "mixed" in words):
        return "mixed"
    return "partly supported" if positive else "not supported"


def _interval(row: object, value: str = "gain") -> str:
    """``value [low, high] (label, adjusted p)`` of one row of an adjusted table."""
    label = getattr(row, "ci_label", "95%")
    return (
        f"{fmt_ci(getattr(row, value), row.ci_low, row.ci_high)} ({label}; adjusted "
        f"{fmt_p(row.p_adj)}, {row.n} seeds)"
    )


def _claim_rows(a: Analysis) -> tuple[str | None, pd.DataFrame, pd.DataFrame]:
    kind = primary_kind(a.df)
    claim = a.claim
    if kind is None or claim is None or claim.results_.empty:
        return kind, pd.DataFrame(), pd.DataFrame()
    res = claim.results_[claim.results_["hierarchy"] == kind]
    con = claim.contrasts_[claim.contrasts_["hierarchy"] == kind]
    return kind, res, con


# ---------------------------------------------------------------- verdicts
def _verdict_hard(a: Analysis) -> tuple[str, str]:
    name = "Fine beats coarse on hard examples (`target_error_hard`)"
    t = a.hard
    if t.empty:
        lacks = (
            f"the metric target_error_hard ({a.hard_note})"
            if "target_error_hard" not in a.df or a.df["target_error_hard"].notna().sum() == 0
            else "a manual target-level arm with finer levels"
        )
        return name, f"{NOT_ANSWERABLE}: it lacks {lacks}."
    sig = t[t["p_adj"] < ALPHA]
    word = signed_verdict(int((sig["gain"] > 0).sum()), int((sig["gain"] < 0).sum()), len(t))
    best = t.loc[t["gain"].idxmax()]
    evidence = (
        f"best finer level {best['level_name']} ({fmt(best['num_classes'])} classes, "
        f"{fmt_size(a.size_label, best['data_fraction'])}): hard error lower than the target "
        "level's by "
        f"{_interval(best)} over {len(t)} finer levels x sizes"
    )
    counts = f"{len(sig)}/{len(t)} cells significant ({int((sig['gain'] > 0).sum())} better)"
    return name, f"**{word}**: {counts}; {evidence}. Hard set: {a.hard_note}."


def _verdict_claim(a: Analysis) -> tuple[str, str]:
    name = (
        "Some level finer than the target beats it, and the finest level is worse than that "
        "level (the paper's claim)"
    )
    kind, res, con = _claim_rows(a)
    if res.empty:
        why = a.claim.target_level_ if a.claim is not None else "no claim analysis"
        return name, f"{NOT_ANSWERABLE}: it lacks a target level with finer levels ({why})."
    parts = []
    for r in res.itertuples(index=False):
        here = con[(con["data_fraction"] == r.data_fraction) & (con["backbone"] == r.backbone)]
        finer = here[here["role"] == "finer vs target"]
        text = f"{fmt_size(a.size_label, r.data_fraction)}: {r.note}"
        if len(finer):
            best = next(finer[finer["gain"] == finer["gain"].max()].itertuples(index=False))
            text += (
                f"; best finer level ({fmt(best.num_classes)} classes) vs the target "
                f"({fmt(r.target_classes)}): {_interval(best)}"
            )
        upturn = here[(here["role"] == "finer vs finest") & here["significant"]]
        if r.finest_worse:
            at = upturn[upturn["num_classes"] == r.claim_level_classes]
            row = next(at.itertuples(index=False))
            text += f"; finest level ({fmt(row.reference_classes)}) worse by {_interval(row)}"
        parts.append(text)
    word = combine(list(res["verdict"]))
    return name, f"**{word}** for {kind}: " + "; ".join(parts) + "."


def _verdict_u(a: Analysis) -> tuple[str, str]:
    name = "U over the levels at or finer than the target (two-lines test), and where it bottoms"
    kind = primary_kind(a.df)
    r = a.ucurve.results_
    if kind is None or r.empty:
        return name, f"{NOT_ANSWERABLE}: it lacks pretraining arms."
    r = r[r["hierarchy"] == kind]
    if (r["n_levels"] < 4).all():
        return (
            name,
            f"{NOT_ANSWERABLE}: it lacks at least 4 granularity levels of {kind} at or finer "
            "than the target.",
        )
    parts = []
    for x in r.itertuples(index=False):
        opt = (
            f"interpolated optimum {fmt_ci(x.optimum, x.optimum_ci_low, x.optimum_ci_high)}"
            if x.interpolated
            else f"not interpolated; interval {fmt(x.optimum_ci_low)}-{fmt(x.optimum_ci_high)}"
        )
        parts.append(
            f"{fmt_size(a.size_label, x.data_fraction)}: "
            f"best level {fmt(x.argmin_classes)} classes "
            f"(P(argmin)={fmt(x.p_argmin, 2)}; 95% best-level set {{{x.best_set}}}; {opt}); "
            f"slopes {fmt(x.slope_low)} ({fmt_p(x.p_low)}) / "
            f"{fmt(x.slope_high)} ({fmt_p(x.p_high)})"
        )
    n_u = int(r["is_u"].sum())
    word = "supported" if n_u == len(r) else ("partly supported" if n_u else "not supported")
    domain = r["domain"].iloc[0]
    return name, f"**{word}** for {kind} ({domain}): {n_u}/{len(r)} curves; " + "; ".join(
        parts
    ) + "."


def _row_coarse(a: Analysis) -> tuple[str, str]:
    name = "Coarser than the target is worse (coarse-to-target; not the paper's claim)"
    kind, _, con = _claim_rows(a)
    coarse = con[con["role"] == "coarser vs target"] if len(con) else con
    if coarse.empty:
        return name, f"{NOT_ANSWERABLE}: it lacks levels coarser than the target."
    sig = coarse[coarse["significant"]]
    # gain = target error - coarse error: negative means the coarser level is worse.
    word = signed_verdict(int((sig["gain"] < 0).sum()), int((sig["gain"] > 0).sum()), len(coarse))
    parts = [
        f"{fmt(x.num_classes)} classes at {fmt_size(a.size_label, x.data_fraction)}: "
        "target error lower by "
        f"{fmt_ci(-x.gain, -x.ci_high, -x.ci_low)} ({x.ci_label}; adjusted {fmt_p(x.p_adj)})"
        for x in coarse.itertuples(index=False)
    ]
    return name, f"**{word}** for {kind}: " + "; ".join(parts) + "."


def _verdict_pair(a: Analysis, first: str, second: str) -> tuple[str, str]:
    name = f"{first} beats {second} at matched class counts finer than the target"
    kinds = set(a.df["hierarchy"])
    missing = [k for k in (first, second) if k not in kinds]
    if missing:
        return name, f"{NOT_ANSWERABLE}: it lacks the {' and '.join(missing)} arm(s)."
    c = a.comparison
    p = (
        c.pooled_[(c.pooled_["a"] == first) & (c.pooled_["b"] == second)]
        if len(c.pooled_)
        else c.pooled_
    )
    if p.empty:
        return (
            name,
            f"{NOT_ANSWERABLE}: it lacks matched class counts finer than the target with "
            "different label functions.",
        )
    cells = c.cells_
    cells = cells[(cells["a"] == first) & (cells["b"] == second) & cells["finer"]]
    parts, words = [], []
    for x in p.itertuples(index=False):
        here = cells[
            (cells["data_fraction"] == x.data_fraction) & (cells["backbone"] == x.backbone)
        ]
        sig = here[here["p_adj"] < ALPHA]
        pos, neg = int((sig["advantage"] > 0).sum()), int((sig["advantage"] < 0).sum())
        if x.p_adj < ALPHA and not (pos and neg):
            words.append("supported" if x.advantage > 0 else "contradicted")
        else:  # the pool is not decisive (or cancels): the cells decide, never "supported"
            words.append(signed_verdict(pos, neg, len(here) + 1))
        per_count = ", ".join(
            f"{fmt(y.num_classes)}: {fmt_ci(y.advantage, y.ci_low, y.ci_high)}"
            for y in here.itertuples(index=False)
        )
        inter = c.interaction_
        inter = (
            inter[
                (inter["a"] == first)
                & (inter["b"] == second)
                & (inter["data_fraction"] == x.data_fraction)
                & (inter["backbone"] == x.backbone)
            ]
            if len(inter)
            else inter
        )
        inter_text = (
            f"; kind x level interaction F={fmt(inter['f_stat'].iloc[0], 3)} "
            f"({fmt_p(inter['p_adj'].iloc[0])}, adjusted)"
            if len(inter) and pd.notna(inter["pvalue"].iloc[0])
            else ""
        )
        parts.append(
            f"{fmt_size(a.size_label, x.data_fraction)}: {first} error lower by "
            f"{_interval(x, 'advantage')}, "
            f"mean over {x.n_class_counts} counts finer than the target; per count "
            f"({here['ci_label'].iloc[0] if len(here) else ''}) {per_count}{inter_text}"
        )
    return name, f"**{combine(words)}**: " + "; ".join(parts) + "."


def _verdict_size(a: Analysis) -> tuple[str, str]:
    name = "Finer levels gain more over the target with more data (the optimum moves finer)"
    kind = primary_kind(a.df)
    s = getattr(a.size, "slopes_", pd.DataFrame())
    if kind is None or s.empty:
        return (
            name,
            f"{NOT_ANSWERABLE}: it lacks at least two sizes ({a.size_label}) and a target level.",
        )
    target_k = a.claim.target_classes_ if a.claim is not None else float("nan")
    s = s[(s["hierarchy"] == kind) & ~(s["num_classes"] <= target_k)]
    if s.empty:
        return name, f"{NOT_ANSWERABLE}: it lacks levels of {kind} finer than the target."
    sig = s[s["p_adj"] < ALPHA]
    word = signed_verdict(int((sig["slope"] > 0).sum()), int((sig["slope"] < 0).sum()), len(s))
    parts = [
        f"{fmt(x.num_classes)} classes: d gain / d log(size) = {_interval(x, 'slope')}, "
        f"gain {fmt(x.gain_low)} -> {fmt(x.gain_high)}, crossover {x.crossover}"
        for x in s.itertuples(index=False)
    ]
    text = f"**{word}** for {kind}: " + "; ".join(parts) + "." + _argmin_by_size(a, kind)
    if (s["n_fractions"] == 2).any():
        text += " Two sizes: each slope is the difference of two points; a slope needs three."
    return name, text


def _argmin_by_size(a: Analysis, kind: str) -> str:
    t = getattr(a.size, "argmin_", pd.DataFrame())
    if t.empty:
        return ""
    t = t[t["hierarchy"] == kind]
    parts = []
    for (frac, _), g in t.groupby(["data_fraction", "backbone"], sort=True):
        if g["p_argmin"].isna().all():  # one seed: no bootstrap, no probability to quote
            continue
        top = g.loc[g["p_argmin"].idxmax()]
        kept = "; ".join(fmt(k) for k in g.loc[g["in_best_set"], "num_classes"])
        parts.append(
            f"{fmt_size(a.size_label, frac)}: P(argmin = {fmt(top['num_classes'])} classes) = "
            f"{fmt(top['p_argmin'], 2)}, best-level set {{{kept}}}"
        )
    return " Best level per size: " + "; ".join(parts) + "." if parts else ""


# ---------------------------------------------------------------- open questions
def _answer_size(a: Analysis) -> str:
    s = getattr(a.size, "slopes_", pd.DataFrame())
    if s.empty:
        return (
            f"Not answerable from this sweep: it lacks a second size ({a.size_label}) or a "
            "target level (add sizes to `data_fractions`, or cross a size option)."
        )
    lines = []
    for x in s.itertuples(index=False):
        direction = (
            "its gain over the target grows with size"
            if x.p_adj < ALPHA and x.slope > 0
            else "its gain over the target shrinks with size"
            if x.p_adj < ALPHA
            else "no detectable change of its gain with size"
        )
        lines.append(
            f"{x.hierarchy} {fmt(x.num_classes)} classes: {direction} "
            f"(slope {_interval(x, 'slope')}; zero crossing {x.crossover})"
        )
    note = (
        " With two sizes each slope is a difference of two points; a slope needs three. Fixed "
        "epochs confound data size with the number of SGD steps."
        if (s["n_fractions"] == 2).any()
        else " Fixed epochs confound data size with the number of SGD steps."
    )
    return "; ".join(lines) + "." + note


def _answer_structure(a: Analysis) -> str:
    c = a.comparison
    if c.cells_.empty:
        return (
            "Not answerable from this sweep: it lacks two hierarchy kinds at matched class counts "
            "(add `random` and/or `cluster_*` kinds)."
        )
    sig = c.cells_[c.cells_["p_adj"] < ALPHA]
    inter = c.interaction_
    inter_sig = inter[inter["p_adj"] < ALPHA] if len(inter) else inter
    head = (
        f"{len(sig)} of {len(c.cells_)} kind contrasts at matched class counts are significant "
        f"(adjusted within each pair; {c.cells_['ci_label'].iloc[0]} intervals)"
    )
    if sig.empty:
        return (
            head + "; within this sweep's precision the number of classes, not the structure, "
            "carries the effect."
        )
    parts = [
        f"{x.a} vs {x.b} at {fmt(x.num_classes)} classes "
        f"({fmt_size(a.size_label, x.data_fraction)}): "
        f"{x.a} error lower by {fmt_ci(x.advantage, x.ci_low, x.ci_high)}"
        for x in sig.itertuples(index=False)
    ]
    inter_text = (
        f" The kind effect depends on the level in {len(inter_sig)} of {len(inter)} "
        "pair x size interaction tests."
        if len(inter)
        else ""
    )
    return head + ": " + "; ".join(parts) + "." + inter_text


def _answer_alignment(a: Analysis) -> str:
    m = getattr(a.alignment, "seed_model_", pd.DataFrame())
    if m.empty or not m["slope"].notna().any():
        return (
            "Not answerable from this sweep: it lacks a target-level arm and label functions with "
            "varied alignment (e.g. a `perturbed` hierarchy at several p)."
        )
    parts = [
        f"{x.metric} ({fmt_size(a.size_label, x.data_fraction)}, {x.n_obs} runs, "
        f"{x.n_seeds} seeds, "
        f"{x.n_cells} kind x level cells): gain over the target level per unit "
        f"{fmt_ci(x.slope, x.ci_low, x.ci_high)} ({x.ci_label}; adjusted {fmt_p(x.p_adj)}; "
        f"{x.model})"
        for x in m[m["slope"].notna()].itertuples(index=False)
    ]
    detected = m[m["p_adj"] < ALPHA]
    # More aligned is a lower conditional entropy and a higher value of every other metric.
    aligned_sign = np.where(detected["metric"].str.contains("cond_entropy"), -1.0, 1.0)
    rises = np.sign(detected["slope"].to_numpy(dtype=float)) == aligned_sign
    if not len(detected):
        head = "No detectable association between alignment and gain over the target level"
    else:
        direction = "rises" if rises.all() else "falls" if not rises.any() else "moves both ways"
        head = (
            f"Gain over the target level {direction} with alignment at fixed log classes by "
            f"{', '.join(sorted(set(detected['metric'])))}"
        )
    return (
        head
        + f" (mixed model, seed and kind x level as units; one analysis per {a.size_label}): "
        + "; ".join(parts)
        + ". Lower `align/cond_entropy` means more aligned. Alignment varies here only with the "
        "kind and the level, so it is confounded with both (the (kind, level) intercepts absorb "
        "much of it); a dose-response needs alignment dialled at one level (perturbation p)."
    )
