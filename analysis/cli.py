"""The `granularity analyze` and `granularity export` subcommands: a sweep's runs (MLflow or an
export file) -> report/ (Markdown + plots); MLflow runs -> an export file.

Building the parser imports nothing heavy: every `granularity` command (and
`--help`) builds it, so pandas, MLflow and the analysis modules are imported
when `analyze` runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from analysis.hard_examples import HARD_MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `analyze` to the `granularity` CLI's subparsers."""
    p = subparsers.add_parser(
        "analyze",
        help="analyse a sweep (its MLflow runs, or an export file with --from) -> report/",
        description="Read a sweep's trial runs from MLflow (or from an export file: --from), "
        "state the verdicts with adjusted intervals, fit the best level per curve, size x "
        "granularity, hierarchy comparisons and alignment, and write report.md + PNG figures "
        "(also logged to the sweep's parent run when read from MLflow).",
    )
    p.add_argument(
        "experiment", nargs="?", help="MLflow experiment name (= the sweep's name); or --from"
    )
    p.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="analyse an export file (`granularity export`) instead of MLflow: nothing is read "
        "from or written to MLflow",
    )
    _tracking_uri(p)
    p.add_argument("--out", default="report", help="output folder (default: report/)")
    p.add_argument("--metric", default="target_error", help="error metric to analyse")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument(
        "--hard-examples",
        choices=HARD_MODES,
        default="auto",
        help="where hard test examples come from: the dataset's own hard split (dataset), the "
        "mistakes of the other seeds' target-level-pretrained models (target_level), or the first "
        "available (auto, the default)",
    )
    p.add_argument(
        "--no-log-artifacts",
        action="store_true",
        help="write nothing to MLflow (not the report on the sweep's run, the cell runs or the "
        "UI views)",
    )
    p.set_defaults(func=run_analyze)
    e = subparsers.add_parser(
        "export",
        help="write a sweep's trial runs to one file (results as data; `analyze --from` reads it)",
        description="Write one row per trial run of the experiment (factor columns, seed, every "
        "metric, the per-example correctness) and the sweep run's tags to a gzipped JSON-lines "
        "file (analysis/export.py describes the format).",
    )
    e.add_argument("experiment", help="MLflow experiment name (= the sweep's name)")
    e.add_argument("--out", required=True, help="the file to write: NAME.jsonl.gz or NAME.jsonl")
    _tracking_uri(e)
    e.set_defaults(func=run_export)


def _tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )


def _error(command: str, message: object) -> int:
    print(f"granularity {command}: error: {message}", file=sys.stderr)
    return 2


def run_analyze(args: argparse.Namespace) -> int:
    """Write the report; exit code 0 on success, 2 on an error the user can fix."""
    if (args.experiment is None) == (args.source is None):
        return _error(
            "analyze",
            f"give an EXPERIMENT or --from FILE, not {'both' if args.source else 'neither'}",
        )
    from analysis.load import ExperimentNotFoundError
    from analysis.report import write_report, write_report_from_export

    options = {"metric": args.metric, "n_boot": args.n_boot, "hard_examples": args.hard_examples}
    try:
        if args.source is not None:
            path = write_report_from_export(args.source, args.out, **options)
        else:
            path = write_report(
                args.experiment,
                args.tracking_uri,
                args.out,
                log_artifacts=not args.no_log_artifacts,
                **options,
            )
    except (ExperimentNotFoundError, FileNotFoundError, ValueError) as err:
        return _error("analyze", err)
    print(f"report written to {path}")
    if args.source is None and not args.no_log_artifacts:
        for line in view_lines(args.experiment, args.tracking_uri):
            print(line)
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write the export file; exit code 0 on success, 2 on an error the user can fix."""
    from analysis.export import export_sweep
    from analysis.load import ExperimentNotFoundError

    try:
        path = export_sweep(args.experiment, args.tracking_uri, args.out)
    except (ExperimentNotFoundError, FileNotFoundError, ValueError) as err:
        return _error("export", err)
    print(f"exported {args.experiment} to {path}")
    return 0


def view_lines(experiment: str, tracking_uri: str) -> list[str]:
    """Where the MLflow UI shows the trials and the cells (the views `write_report` stored)."""
    from mlflow.tracking import MlflowClient

    from analysis.cells import CELLS_VIEW, SHARED_VIEW, TRIALS_VIEW, view_address

    found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    if found is None or SHARED_VIEW + CELLS_VIEW not in found.tags:
        return []  # no sweep run, so no cells and no views were written
    # An http tracking URI is the UI's own address; a database is served by `mlflow ui`.
    base = tracking_uri if tracking_uri.startswith(("http://", "https://")) else None
    where = "" if base else " (after `mlflow ui --backend-store-uri " + tracking_uri + "`)"
    base = base or "http://127.0.0.1:5000"
    return [
        f"MLflow UI{where}:",
        f"  trials: {view_address(found.experiment_id, TRIALS_VIEW, base)}",
        "  cells, one chart per data fraction: "
        + view_address(found.experiment_id, CELLS_VIEW, base),
    ]
