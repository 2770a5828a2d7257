"""The analysis report, composed: load a sweep's trials, fit every estimator (``analyze``), write
the Markdown/HTML report with its figures and publish it to MLflow (``write_report``).

The parts live by job: analysis/fit.py (Analysis, analyze), analysis/verdicts.py (claims and answers as sentences), analysis/figures.py
(plots), analysis/render.py (Markdown and HTML), analysis/publish.py (MLflow).
"""

from __future__ import annotations

from pathlib import Path

from analysis.adaptive import design_of
from analysis.figures import write_figures
from analysis.fit import ALPHA, Analysis, analyze
from analysis.hard_examples import HardMode
from analysis.load import find_sweep_run, load_runs
from analysis.publish import publish
from analysis.render import markdown_table, render_html, render_markdown

__all__ = [
    "ALL_STATUSES",
    "ALPHA",
    "Analysis",
    "analyze",
    "markdown_table",
    "render_markdown",
    "write_report",
]

ALL_STATUSES = ("FINISHED", "FAILED", "RUNNING", "KILLED", "SCHEDULED")


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
    plots = write_figures(a, out)
    report = out / "report.md"
    text = render_markdown(a, experiment, plots)
    report.write_text(text, encoding="utf-8")
    (out / "report.html").write_text(render_html(text, out, experiment), encoding="utf-8")
    if log_artifacts and parent_id is not None:
        publish(out, a.df, tracking_uri=tracking_uri, parent_run_id=parent_id, metric=metric)
    return report
