"""Analysis of granularity sweeps, from a notebook or the CLI: load trials, fit, get tables and
figures back.

Load a sweep from MLflow or from an export file (``granularity export``) into one row per trial,
fit every estimator, and read the report's tables as DataFrames and its figures as matplotlib
Figures:

    >>> import analysis
    >>> df = analysis.load_runs("quickstart", "sqlite:///mlflow.db")  # doctest: +SKIP
    >>> df = analysis.load_export("docs/quickstart/runs.jsonl.gz")  # doctest: +SKIP
    >>> a = analysis.analyze(df, n_boot=500)  # doctest: +SKIP
    >>> a.gain.table_  # paired gains over scratch and the target level  # doctest: +SKIP
    >>> sorted(a.tables())  # every table of the report, by name  # doctest: +SKIP
    >>> analysis.verdicts.verdicts(a)  # (claim, verdict) sentences  # doctest: +SKIP
    >>> fig = analysis.figures.plot_gain_over_target(a)  # doctest: +SKIP
    >>> analysis.write_report_from_export("runs.jsonl.gz", "report")  # doctest: +SKIP

Names are imported on first use, so ``import analysis`` stays cheap (the CLI's parser imports
it): ``load_runs``, ``load_sweep``, ``Sweep`` (analysis.load); ``load_export``, ``read_export``,
``write_export``, ``export_sweep`` (analysis.export); ``analyze``, ``Analysis``, ``ALPHA``
(analysis.fit); ``analyze_sweep``, ``render_report``, ``write_report``,
``write_report_from_export`` (analysis.report); ``pretraining_table`` (analysis.diagnostics);
and the modules ``estimators``, ``figures``, ``verdicts``, ``render``, ``stats``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

# Public name -> the module of analysis/ that defines it.
_NAMES = {
    "load_runs": "load",
    "load_sweep": "load",
    "Sweep": "load",
    "load_export": "export",
    "read_export": "export",
    "write_export": "export",
    "export_sweep": "export",
    "analyze": "fit",
    "Analysis": "fit",
    "ALPHA": "fit",
    "analyze_sweep": "report",
    "render_report": "report",
    "write_report": "report",
    "write_report_from_export": "report",
    "pretraining_table": "diagnostics",
}
_MODULES = ("estimators", "figures", "verdicts", "render", "stats")

__all__ = [*_NAMES, *_MODULES]


def _module(name: str) -> ModuleType:
    # Literal imports, one per module, so tests/test_imports.py sees every edge.
    if name == "load":
        import analysis.load as module
    elif name == "export":
        import analysis.export as module
    elif name == "fit":
        import analysis.fit as module
    elif name == "report":
        import analysis.report as module
    elif name == "diagnostics":
        import analysis.diagnostics as module
    elif name == "estimators":
        import analysis.estimators as module
    elif name == "figures":
        import analysis.figures as module
    elif name == "verdicts":
        import analysis.verdicts as module
    elif name == "render":
        import analysis.render as module
    else:
        import analysis.stats as module
    return module


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    if name in _NAMES:
        return getattr(_module(_NAMES[name]), name)
    if name in _MODULES:
        return _module(name)
    raise AttributeError(
        f"module 'analysis' has no attribute {name!r}; public names: {', '.join(__all__)}"
    )


def __dir__() -> list[str]:
    return sorted(__all__)
