"""The analysis report, composed: a sweep's trials (from MLflow or an export file), every estimator
fitted, the Markdown/HTML report with its figures, published to MLflow when read from it.

The parts live by job: analysis/fit.py (Analysis, analyze), analysis/verdicts.py (claims and
answers as sentences), analysis/figures.py (plots), analysis/render.py (Markdown and HTML),
analysis/publish.py (MLflow).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from analysis.adaptive import design_of
from analysis.export import read_export
from analysis.figures import write_figures
from analysis.fit import ALPHA, Analysis, analyze
from analysis.formatting import DATA_FRACTION
from analysis.hard_examples import HardMode
from analysis.load import ALL_STATUSES, Sweep, find_sweep_run, load_sweep
from analysis.protocol import ProtocolInteraction, crosses_protocols
from analysis.publish import publish
from analysis.render import markdown_table, render_html, render_markdown, render_protocol
from analysis.variants import (
    AnalysisConfig,
    View,
    across_modes,
    config_of,
    hard_examples_within_blocks,
    views,
)

__all__ = [
    "ALL_STATUSES",
    "ALPHA",
    "Analysis",
    "analyze",
    "analyze_sweep",
    "markdown_table",
    "render_markdown",
    "render_report",
    "write_report",
    "write_report_from_export",
]


def analyze_sweep(
    sweep: Sweep,
    *,
    metric: str = "target_error",
    n_boot: int = 2000,
    hard_examples: HardMode = "auto",
    trials: pd.DataFrame | None = None,
    size_label: str = DATA_FRACTION,
) -> Analysis:
    """``analyze`` on a sweep's finished trials (or ``trials``, one view of them:
    analysis.variants), with its status counts, failure reasons and adaptive design (the parent
    run's ``granularity.replicates``) for the report."""
    every = sweep.runs
    counts = every["status"].value_counts().to_dict() if len(every) else {}
    bad = every[every["status"] == "FAILED"]
    failures = bad["failure"].fillna("no reason logged").str.slice(0, 120).value_counts()
    a = analyze(
        sweep.finished() if trials is None else trials,
        metric=metric,
        n_boot=n_boot,
        status_counts=counts,
        failures=failures,
        hard_examples=hard_examples,
        size_label=size_label,
    )
    a.design = design_of(sweep.sweep_tags)
    return a


def render_report(
    sweep: Sweep,
    out_dir: str | Path = "report",
    *,
    metric: str = "target_error",
    n_boot: int = 2000,
    hard_examples: HardMode = "auto",
    size: str | None = None,
    block: str | None = None,
) -> tuple[Path, Analysis]:
    """Analyse ``sweep`` and write ``report.md``, ``report.html`` and the figures to ``out_dir``
    (nothing to MLflow); returns the report's path and the (first) Analysis.

    ``size``/``block`` override the sweep's analysis config (analysis.variants). A sweep with
    crossed factors gets one section group per view (variant, pooled over blocks, per block),
    each view's figures in its own sub-folder."""
    out = Path(out_dir)
    config = config_of(sweep.sweep_tags, size=size, block=block)
    parts = views(sweep.finished(), config)
    out.mkdir(parents=True, exist_ok=True)
    options = {"metric": metric, "n_boot": n_boot, "hard_examples": hard_examples}
    fitted: list[tuple[View, Analysis, str]] = []
    for view in parts:
        folder = out / view.slug if view.slug else out
        folder.mkdir(exist_ok=True)
        within = hard_examples_within_blocks(view, hard_examples, metric)
        kw = {**options, "size_label": view.size_label}
        if within is None:
            a = analyze_sweep(sweep, trials=view.df, **kw)
        else:  # hard examples already derived block by block: analyze takes them as they are
            a = analyze_sweep(sweep, trials=within[0], **{**kw, "hard_examples": "dataset"})
            a.hard_note = within[1]
        title = f"{sweep.experiment} ({view.label})" if view.label else sweep.experiment
        fitted.append((view, a, render_markdown(a, title, write_figures(a, folder))))
    if len(fitted) == 1 and not fitted[0][0].label:
        text = fitted[0][2]
    else:
        text = _grouped(sweep.experiment, fitted)
    text += _across_modes(sweep.finished(), config, metric)
    report = out / "report.md"
    report.write_text(text, encoding="utf-8")
    (out / "report.html").write_text(render_html(text, out, sweep.experiment), encoding="utf-8")
    return report, fitted[0][1]


def _across_modes(trials: pd.DataFrame, config: AnalysisConfig, metric: str) -> str:
    """The sections that compare the finetuning modes (the protocol x level interaction) when
    the sweep crosses the linear probe with full finetuning; "" otherwise."""
    if not crosses_protocols(trials):
        return ""
    frame, block, keys = across_modes(trials, config)
    p = ProtocolInteraction(metric=metric, block=block, keys=keys, alpha=ALPHA).fit(frame)
    size_label = config.size or DATA_FRACTION
    return "\n" + render_protocol(p, size_label)


def _grouped(experiment: str, fitted: list[tuple[View, Analysis, str]]) -> str:
    """One report of several views: a contents list, then each view's report one heading level
    down, its figure links pointing into its sub-folder."""
    head = [
        f"# Granularity sweep report: {experiment}\n",
        "The sweep crosses factors the estimators must not pool as replicates; each analysis "
        "below fits one view of the trials (docs/STATISTICS.md, crossed factors):\n",
        *(f"- {view.label}: {len(view.df)} finished trials" for view, _, _ in fitted),
        "",
    ]
    body = []
    for view, _, text in fitted:
        text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)
        body.append(re.sub(r"\]\(([^/)]+\.png)\)", rf"]({view.slug}/\1)", text))
    return "\n".join(head) + "\n" + "\n".join(body)


def write_report(
    experiment: str,
    tracking_uri: str = "sqlite:///mlflow.db",
    out_dir: str | Path = "report",
    *,
    metric: str = "target_error",
    n_boot: int = 2000,
    log_artifacts: bool = True,
    hard_examples: HardMode = "auto",
    size: str | None = None,
    block: str | None = None,
) -> Path:
    """Analyse a sweep in MLflow and write ``report.md``, ``report.html`` + PNG plots to
    ``out_dir``.

    Returns the report's path. When there is a sweep parent run (tag ``granularity.role=sweep``)
    and ``log_artifacts`` is true, the files are logged to it (folder ``analysis``), every cell
    gets its summary run under it and the experiment gets the UI's shared views
    (analysis/cells.py). Raises ``ExperimentNotFoundError`` (a LookupError) for an unknown
    experiment and ValueError when it holds no finished trials.
    """
    sweep = load_sweep(experiment, tracking_uri)
    report, a = render_report(
        sweep,
        out_dir,
        metric=metric,
        n_boot=n_boot,
        hard_examples=hard_examples,
        size=size,
        block=block,
    )
    parent_id = find_sweep_run(experiment, tracking_uri) if log_artifacts else None
    if parent_id is not None:
        # Cells are (hierarchy, level, fraction, backbone): with crossed factors, every trial.
        config = config_of(sweep.sweep_tags, size=size, block=block)
        plain = len(views(sweep.finished(), config)) == 1
        cells = a.df if plain else sweep.finished()
        publish(
            report.parent, cells, tracking_uri=tracking_uri, parent_run_id=parent_id, metric=metric
        )
    return report


def write_report_from_export(
    path: str | Path,
    out_dir: str | Path = "report",
    *,
    metric: str = "target_error",
    n_boot: int = 2000,
    hard_examples: HardMode = "auto",
    size: str | None = None,
    block: str | None = None,
) -> Path:
    """The report of an export file (analysis/export.py), written to ``out_dir`` without MLflow:
    the same ``report.md`` as ``write_report`` on the sweep it was exported from."""
    report, _ = render_report(
        read_export(path),
        out_dir,
        metric=metric,
        n_boot=n_boot,
        hard_examples=hard_examples,
        size=size,
        block=block,
    )
    return report
