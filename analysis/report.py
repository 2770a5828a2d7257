"""The analysis report, composed: a sweep's trials (from MLflow or an export file), every estimator
fitted, the Markdown/HTML report with its figures, published to MLflow when read from it.

The parts live by job: analysis/fit.py (Analysis, analyze), analysis/verdicts.py (claims and
answers as sentences), analysis/figures.py (plots), analysis/render.py (Markdown and HTML),
analysis/publish.py (MLflow).
"""

from __future__ import annotations

from pathlib import Path

from analysis.adaptive import design_of
from analysis.export import read_export
from analysis.figures import write_figures
from analysis.fit import ALPHA, Analysis, analyze
from analysis.hard_examples import HardMode
from analysis.load import ALL_STATUSES, Sweep, find_sweep_run, load_sweep
from analysis.publish import publish
from analysis.render import markdown_table, render_html, render_markdown

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
) -> Analysis:
    """``analyze`` on a sweep's finished trials, with its status counts, failure reasons and
    adaptive design (the parent run's ``granularity.replicates``) for the report."""
    every = sweep.runs
    counts = every["status"].value_counts().to_dict() if len(every) else {}
    bad = every[every["status"] == "FAILED"]
    failures = bad["failure"].fillna("no reason logged").str.slice(0, 120).value_counts()
    a = analyze(
        sweep.finished(),
        metric=metric,
        n_boot=n_boot,
        status_counts=counts,
        failures=failures,
        hard_examples=hard_examples,
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
) -> tuple[Path, Analysis]:
    """Analyse ``sweep`` and write ``report.md``, ``report.html`` and the figures to ``out_dir``
    (nothing to MLflow); returns the report's path and the Analysis."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a = analyze_sweep(sweep, metric=metric, n_boot=n_boot, hard_examples=hard_examples)
    plots = write_figures(a, out)
    report = out / "report.md"
    text = render_markdown(a, sweep.experiment, plots)
    report.write_text(text, encoding="utf-8")
    (out / "report.html").write_text(render_html(text, out, sweep.experiment), encoding="utf-8")
    return report, a


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
        sweep, out_dir, metric=metric, n_boot=n_boot, hard_examples=hard_examples
    )
    parent_id = find_sweep_run(experiment, tracking_uri) if log_artifacts else None
    if parent_id is not None:
        publish(
            report.parent, a.df, tracking_uri=tracking_uri, parent_run_id=parent_id, metric=metric
        )
    return report


def write_report_from_export(
    path: str | Path,
    out_dir: str | Path = "report",
    *,
    metric: str = "target_error",
    n_boot: int = 2000,
    hard_examples: HardMode = "auto",
) -> Path:
    """The report of an export file (analysis/export.py), written to ``out_dir`` without MLflow:
    the same ``report.md`` as ``write_report`` on the sweep it was exported from."""
    report, _ = render_report(
        read_export(path), out_dir, metric=metric, n_boot=n_boot, hard_examples=hard_examples
    )
    return report
