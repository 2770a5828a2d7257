"""The report as text: Markdown sections of a fitted Analysis, and that Markdown as an HTML page.

Longer than 400 lines because every report section is one short function over the same fitted
Analysis and table helpers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.adaptive import adaptive_state, cell_seeds_table, outcome_table, race_table
from analysis.fit import Analysis
from analysis.formatting import DATA_FRACTION, fmt, fmt_ci, fmt_p, fmt_size
from analysis.protocol import ProtocolInteraction
from analysis.trial_table import pretrained_arms, scratch_labels
from analysis.verdicts import answers, verdicts
from contracts import kind_order
from sequential import State


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
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    if len(df) > max_rows:
        lines.append(f"\n_({len(df) - max_rows} more rows not shown)_")
    return "\n".join(lines) + "\n"


GAIN_FIGURES = (
    ("gain_over_target", "gain over the target level against classes"),
    ("gain_vs_size", "gain over the target level against data size"),
)


def render_markdown(a: Analysis, experiment: str, plots: dict[str, bool]) -> str:
    """The report's Markdown text: one section after another, top to bottom."""
    out = _section_sweep(a, experiment)
    out += _section_verdicts(a, plots)
    out += _section_questions(a)
    out += _section_claim(a)
    out += _section_ucurves(a, plots)
    out += _section_gain(a, plots)
    out += _section_pretraining(a, plots)
    out += _section_size(a, plots)
    out += _section_kinds(a)
    out += _section_alignment(a, plots)
    out += _section_dial(a)
    out += _section_adaptive(a)
    return "\n".join(out) + "\n"


def _section_sweep(a: Analysis, experiment: str) -> list[str]:
    """Title and what the sweep holds: runs, kinds, fractions, backbones, seeds, failures."""
    df = a.df
    seeds = sorted(df["seed"].dropna().unique())
    kinds = kind_order(list(pretrained_arms(df)["hierarchy"].unique()))
    scratch = scratch_labels(df)
    counts = ", ".join(f"{v} {k.lower()}" for k, v in sorted(a.status_counts.items()))
    out = [
        f"# Granularity sweep report: {experiment}\n",
        # No date or source here: the same runs give the same report, from MLflow or an export.
        f"Metric: `{a.metric}` (lower is better).\n",
        "## Sweep\n",
        f"- trial runs: {counts}; analysed: {len(df)} finished "
        f"({a.ucurve.n_dropped_} more dropped for a NaN/inf `{a.metric}`)",
        f"- hierarchy kinds: {', '.join(kinds) or 'none'}; scratch baselines: "
        f"{', '.join(scratch) or 'none'}",
        f"- {_size_axis(a)}: "
        + ", ".join(fmt(f) for f in sorted(df["data_fraction"].dropna().unique())),
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
            "- **single seed: no confidence intervals or tests are possible; every number below "
            "is one run.**"
        )
    out.append("")
    return out


def _size_axis(a: Analysis) -> str:
    """The size axis as the report names it: data fractions, or the crossed option's values."""
    if a.size_label == "data fraction":
        return "data fractions"
    return f"size axis ({a.size_label}; the tables' `data_fraction` column)"


def _section_verdicts(a: Analysis, plots: dict[str, bool]) -> list[str]:
    """One line per claim: the verdict and its evidence; the forest plot of its contrasts."""
    out = ["## Verdicts\n", "| claim | verdict and evidence |", "|---|---|"]
    out += [f"| {name} | {text} |" for name, text in verdicts(a)]
    if plots.get("forest"):
        out += ["", "![forest plot of the verdicts' contrasts](forest.png)"]
    return out


def _section_questions(a: Analysis) -> list[str]:
    """The three open questions' answers."""
    out: list[str] = [
        "",
        "## The three open questions\n",
        *(f"{i}. **{q}** {text}" for i, (q, text) in enumerate(answers(a), start=1)),
        "",
    ]
    return out


def _section_claim(a: Analysis) -> list[str]:
    """The paper's claim per curve: its result rows and every contrast with the interval the
    verdict quotes (adjusted; ``ci_label``) beside the unadjusted one."""
    if a.claim is None or a.claim.results_.empty:
        return []
    return [
        "## The paper's claim, per curve\n",
        f"Target level: {a.claim.target_level_}. gain = reference error - level error "
        "(positive: the level is better), paired by seed; `ci_low`/`ci_high` is the adjusted "
        "interval the verdicts quote (`ci_label`), agreeing with `p_adj`.\n",
        markdown_table(a.claim.results_),
        "Contrasts:\n",
        markdown_table(
            a.claim.contrasts_,
            [
                "hierarchy",
                "data_fraction",
                "backbone",
                "role",
                "reference_classes",
                "level_name",
                "num_classes",
                "n",
                "gain",
                "ci_low",
                "ci_high",
                "ci_label",
                "ci_low_unadjusted",
                "ci_high_unadjusted",
                "p_adj",
                "significant",
            ],
        ),
    ]


def _section_ucurves(a: Analysis, plots: dict[str, bool]) -> list[str]:
    """The best level, the optimum and the U test over levels at or finer than the target, and
    the mean error per level."""
    out: list[str] = ["## U-curves\n"]
    if plots.get("ucurves"):
        out.append("![U-curves](ucurves.png)\n")
    out += [
        "Over the levels at or finer than the target (`domain`): the best level is the grid "
        "argmin, with its seed-bootstrap probability P(argmin) and the 95% confidence set of "
        "levels that may be best (`best_set`); the optimum is the vertex of the three-point "
        "parabola around the argmin when it is convex (`interpolated`, `curvature_p`), its "
        "interval the hull of the vertex's bootstrap interval and the best set. U test: "
        "Simonsohn's (2018) two-lines test with seed fixed effects (both slopes significant "
        "with opposite signs).\n",
        markdown_table(
            a.ucurve.results_,
            [
                "hierarchy",
                "data_fraction",
                "backbone",
                "domain",
                "n_seeds",
                "n_levels",
                "argmin_classes",
                "p_argmin",
                "best_set",
                "optimum",
                "interpolated",
                "curvature_p",
                "optimum_ci_low",
                "optimum_ci_high",
                "slope_low",
                "p_low",
                "slope_high",
                "p_high",
                "is_u",
                "note",
            ],
        ),
        "### P(argmin) per level (seed bootstrap) and the 95% best-level set\n",
        markdown_table(getattr(a.ucurve, "argmin_", None)),
        "### Mean error per level (95% t interval over seeds; examples per class is the known "
        "confound)\n",
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


def _section_gain(a: Analysis, plots: dict[str, bool]) -> list[str]:
    """Paired gains over scratch and the target level; hard examples where logged."""
    out: list[str] = ["## Gain over the baselines\n"]
    out += [f"![{alt}]({name}.png)\n" for name, alt in GAIN_FIGURES if plots.get(name)]
    out += [
        "gain = baseline error - arm error, paired by seed (positive: the pretraining helps); "
        "unadjusted 95% t interval and paired t test, descriptive (the verdicts quote the "
        f"adjusted intervals above). Target level: {a.gain.target_level_}.\n",
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
                    "ci_label",
                    "pvalue",
                    "p_adj",
                ],
            ),
        ]
    if a.easy_hard is not None and not a.easy_hard.empty:
        if plots.get("easy_hard"):
            out.append("![easy and hard error per level](easy_hard.png)\n")
        out += [
            "### Every arm on easy and hard examples (mean over seeds)\n",
            markdown_table(a.easy_hard),
        ]
    return out


def _section_pretraining(a: Analysis, plots: dict[str, bool]) -> list[str]:
    """Train and validation error at the end of pretraining, per level: converged or not."""
    t = a.pretraining
    if t is None or t.empty:
        return [
            "## Pretraining diagnostics\n",
            "_(the trials logged no `pretrain/error`: not available)_\n",
        ]
    figure = ["![pretraining diagnostics](pretraining.png)\n"] if plots.get("pretraining") else []
    return [
        "## Pretraining diagnostics\n",
        *figure,
        "Error on the pretraining labels at the end of pretraining (last epoch; mean over seeds, "
        "95% t interval): `train` on the training batches while training, `val` on the "
        "held-out validation split (– when the dataset has none). A level whose train error "
        "stays high did not converge in the budget; one with low train and high val error "
        "memorised its labels.\n",
        markdown_table(t),
    ]


def _section_size(a: Analysis, plots: dict[str, bool]) -> list[str]:
    """Size x granularity: per level the slope of its gain over the target on log size, the best
    level per size, the older optimum-per-size tables, heatmaps."""
    out: list[str] = ["## Size x granularity\n"]
    if plots.get("heatmap"):
        out.append("![size x level heatmap](heatmap.png)\n")
    slopes = getattr(a.size, "slopes_", None)
    if slopes is not None and not slopes.empty:
        out += [
            f"Per level: the gain over the target level regressed on log({a.size_label}), paired "
            "by seed; `ci_low`/`ci_high` is the adjusted interval (`ci_label`) that agrees with "
            "`p_adj`; `crossover`: the size where the gain is 0, or beyond the range. With two "
            "sizes a slope is the difference of two points.\n",
            markdown_table(slopes),
        ]
    argmin = getattr(a.size, "argmin_", None)
    if argmin is not None and not argmin.empty:
        out += ["P(argmin) per level and size (seed bootstrap) and the 95% best-level set:\n"]
        out.append(markdown_table(argmin))
    out += [
        f"Optimum per {a.size_label} (joint seed bootstrap across sizes: a seed's nested "
        "subsets stay together):\n",
        markdown_table(a.size.optima_),
        f"Mean error over (level, {a.size_label}):\n",
        markdown_table(a.size.heatmap_),
        f"Examples per pretraining class over (level, {a.size_label}):\n",
        markdown_table(a.size.examples_per_class_),
    ]
    return out


def _section_kinds(a: Analysis) -> list[str]:
    """Hierarchy kinds compared at matched class counts, and whether the advantage depends on
    the level."""
    out: list[str] = [
        "## Hierarchy kinds at matched class counts\n",
        "advantage = error(b) - error(a) paired by seed (positive: a is better); cells where both "
        "kinds have the same label function are skipped. Effect size: Cohen's d_z. `p_adj`: "
        "paired t, adjusted within each pair (a, b); `ci_low`/`ci_high` is the interval that "
        "agrees with it (`ci_label`), the unadjusted one beside it.\n",
        "Pooled over the matched class counts finer than the target:\n",
        markdown_table(a.comparison.pooled_),
        "Per class count (`finer`: finer than the target):\n",
        markdown_table(a.comparison.cells_),
    ]
    interaction = getattr(a.comparison, "interaction_", None)
    if interaction is not None and not interaction.empty:
        out += [
            "Kind x level interaction (does the advantage change with the level? F test of the "
            "interaction in a seed-blocked linear model, adjusted over pairs):\n",
            markdown_table(interaction),
        ]
    return out


def _section_alignment(a: Analysis, plots: dict[str, bool]) -> list[str]:
    """Alignment vs transfer: the seed-unit mixed model the verdicts quote, then the rank
    correlations over label functions (pseudo-replicated, descriptive) and their points."""
    out: list[str] = ["## Alignment vs transfer\n"]
    if plots.get("alignment"):
        out.append("![alignment](alignment.png)\n")
    seed_model = getattr(a.alignment, "seed_model_", None)
    if seed_model is not None and not seed_model.empty:
        out += [
            "The analysis the answer quotes, one per data fraction: a linear mixed model of the "
            "gain over the target level on the alignment metric and log classes, with seed and "
            "(kind, level) random intercepts; the interval agrees with `p_adj` (`ci_label`).\n",
            markdown_table(seed_model),
        ]
    out += [
        f"Descriptive: {a.alignment.outcome_} per label function (mean over seeds); Spearman rho "
        "with an expanded-percentile bootstrap CI over label functions, partial rho controlling "
        "for log(classes). Label functions of one kind are near-copies, so these intervals "
        "are too narrow; the verdicts do not read them.\n",
        markdown_table(a.alignment.results_),
        "Points:\n",
        markdown_table(a.alignment.points_),
    ]
    return out


def _section_dial(a: Analysis) -> list[str]:
    """Alignment dialled by perturbed arms (analysis.alignment_dial): per (level, p) the
    realised alignment and the gain over the target level; per level the dose-response slope
    and where the gain crosses 0; whether the slopes differ between levels."""
    d = a.dial
    if d is None or d.cells_.empty:
        return []
    x = "AMI" if d.x_ == "align/ami" else f"`{d.x_}` (no AMI logged)"
    out = [
        "## Alignment dialled at fixed granularity (perturbed arms)\n",
        f"Perturbed arms regroup the leaf classes with probability p at a fixed level, so "
        f"alignment with the target moves while granularity does not; each seed draws its own "
        f"perturbation. Per (level, p): realised {x} (`ami`) and H(target | pretraining) "
        f"(`cond_entropy`), means over seeds, and the gain over the target-level arm "
        f"({d.target_level_}; target-level error - arm error, paired by seed), its interval "
        "Holm-consistent over the (level, p) cells (`ci_label`, `p_adj`).\n",
        markdown_table(d.cells_),
    ]
    if not d.dose_.empty:
        out += [
            f"Dose-response per level: per seed, the OLS slope of the gain on {x} over the dial; "
            "`slope` is their mean (the seed is the unit), its t interval Holm-consistent over "
            f"the levels. `threshold`: the {x} where the mean fitted line crosses gain 0 "
            "(inverse prediction; Fieller's interval with the seed as the unit: every value "
            "where the mean line's gain is not distinguishable from 0), `crossing` says whether "
            f"it lies within the observed range `x_low`-`x_high` of {x}.\n",
            markdown_table(d.dose_),
            "In words: "
            + "; ".join(
                f"{r.level_name} ({fmt(r.num_classes)} classes, "
                f"{fmt_size(a.size_label, r.data_fraction)}): gain per unit {x} {fmt_ci(r.slope, r.ci_low, r.ci_high)} ({r.ci_label}; "
                f"adjusted {fmt_p(r.p_adj)}); the gain crosses 0 {r.crossing}"
                + (
                    f" [{fmt(r.threshold_ci_low)}, {fmt(r.threshold_ci_high)}]"
                    if r.crossing.startswith("at") and np.isfinite(r.threshold_ci_low)
                    else ""
                )
                for r in d.dose_.itertuples(index=False)
            )
            + ".\n",
        ]
    if not d.interaction_.empty:
        out += [
            "Level x alignment interaction: does alignment's effect differ between the levels? "
            "Per seed, the finer level's slope minus the coarser level's (`difference`), t "
            "interval over seeds, Holm-consistent over the pairs of levels.\n",
            markdown_table(d.interaction_),
        ]
    return out


def _section_adaptive(a: Analysis) -> list[str]:
    """Adaptive replicates: the method, and per comparison and cell the seeds run and why they
    stopped."""
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
        *_section_race(a, state),
    ]


def _section_race(a: Analysis, state: State) -> list[str]:
    """The best-level races: per group, the levels dropped, the winner, the answer."""
    if not state.races:
        return []
    d = state.design
    used = sum(state.seeds_run.values())
    fixed = len(state.cells) * d.max
    return [
        "\n## Best-level race\n",
        f"Per kind, data fraction and backbone the levels raced (`best_level`, racing.py): after "
        f"each round a level left once its paired deficit to the reference level was decided, "
        f"or (margin {d.margin:g}) it was shown within margin of it; the levels still racing "
        f"got the next round's seeds. P(the chosen level is worse than the best by more than "
        f"the margin) <= alpha = {d.alpha:g} per group, whatever the stopping. Trials: "
        f"{used} run, {fixed} for the fixed design ({fixed - used} saved). P(best): "
        "seed-bootstrap probability that the winner beats every other level (paired, over "
        "the seeds both ran). Winner interval: its mean error at its last look's level.\n",
        markdown_table(race_table(state, a.df, d, a.metric)),
    ]


def _with_ci(t: pd.DataFrame, value: str) -> pd.Series:
    """``value [low, high]`` per row of a table with ``value``, ``value_ci_low``/``_ci_high``."""
    return pd.Series(
        [
            fmt_ci(m, lo, hi)
            for m, lo, hi in t[[value, f"{value}_ci_low", f"{value}_ci_high"]].to_numpy()
        ],
        index=t.index,
        dtype=object,
    )


def render_protocol(p: ProtocolInteraction, size_label: str = DATA_FRACTION) -> str:
    """The protocol x level section (analysis.protocol): per stratum (pooled over blocks, then
    each block) the gains under the linear probe and full finetuning and their interaction,
    the levels where the interaction is detected, and the omnibus test."""
    out = [
        "## Protocol x level interaction (linear probe vs full finetuning)\n",
        "Both protocols finetune the same pretrained checkpoints. Per level at or finer than "
        f"the target ({p.target_level_}): `gain_linear` / `gain_full` = error of the "
        "target-level arm - error of the level under that protocol, paired by replicate unit "
        "(the seed; a (block, seed) pair when pooled over blocks); `interaction` = gain_full - "
        "gain_linear per unit (positive: full finetuning widens the level's advantage over the "
        "target level). Intervals: t over units, Holm-consistent over the levels of one curve "
        "(each quantity its own family; `interaction p_adj` is Holm). Omnibus: does the "
        "protocol effect differ between the levels (target level included)? Repeated-measures "
        f"F of level on the per-unit interaction with unit fixed effects. The {size_label} and "
        "backbone columns say which curve a row belongs to.\n",
    ]
    t, omni = p.table_, p.omnibus_
    if t.empty:
        return "\n".join([*out, "_(no level with both protocols and a target-level arm)_\n"])
    for stratum in dict.fromkeys(t["stratum"]):
        rows = t[t["stratum"] == stratum]
        title = _stratum_title(stratum, p.block)
        shown = rows.assign(
            **{f"{v} [CI]": _with_ci(rows, v) for v in ("gain_linear", "gain_full", "interaction")},
            **{"interaction p_adj": rows["interaction_p_adj"]},
        )
        columns = ["hierarchy", "level_name", "num_classes", "data_fraction", "backbone"]
        columns += [*p.keys, "n", "error_linear", "error_full", "gain_linear [CI]"]
        columns += ["gain_full [CI]", "interaction [CI]", "interaction p_adj", "ci_label"]
        found = rows[rows["interaction_p_adj"] < p.alpha]
        detected = "; ".join(
            f"{x.hierarchy} {fmt(x.num_classes)} classes ({fmt_size(size_label, x.data_fraction)}"
            f"): {fmt_ci(x.interaction, x.interaction_ci_low, x.interaction_ci_high)}"
            for x in found.itertuples(index=False)
        )
        o = omni[omni["stratum"] == stratum]
        tests = "; ".join(
            f"{x.hierarchy} ({fmt_size(size_label, x.data_fraction)}): F({fmt(x.df_num)}, "
            f"{fmt(x.df_den)}) = {fmt(x.f_stat, 3)}, {fmt_p(x.pvalue)}"
            for x in o.itertuples(index=False)
        )
        out += [
            f"### {title}\n",
            markdown_table(shown, columns),
            f"Interaction detected (Holm, adjusted p < {p.alpha:g}) at: "
            f"{detected or 'no level'}.\n",
            f"Omnibus protocol x level: {tests or 'not testable (too few levels or units)'}.\n",
        ]
    return "\n".join(out)


def _stratum_title(stratum: str, block: str | None) -> str:
    """A stratum's heading: the pooled analysis and its unit, or one block."""
    if block is None:
        return "All trials (replicate unit: seed)"
    name = block.removeprefix("dataset.")
    if stratum == "pooled":
        return f"Pooled over the blocks of {name} (replicate unit: {name} x seed)"
    return f"Block {stratum}"


def render_html(markdown_text: str, folder: Path, title: str) -> str:
    """The report as one self-contained HTML page (plots inlined), for MLflow's artifact viewer."""
    import base64

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    for png in sorted(folder.rglob("*.png")):  # a crossed sweep's views keep theirs in folders
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        name = png.relative_to(folder).as_posix()
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{data}"')
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.85em}"
        "td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
