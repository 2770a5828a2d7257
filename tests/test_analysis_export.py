"""Results as data: an export holds the sweep (frame, dtypes, the parent's design), the report
made from it is the report made from MLflow, the bytes are reproducible, the CLI refuses bad
input, and the notebook API reaches it all."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis import cli
from analysis.export import ExportFormatError, load_export, read_export, write_export
from analysis.load import ALL_STATUSES, load_runs, load_sweep
from analysis.report import write_report, write_report_from_export
from contracts import REPLICATES
from testing.simulate import simulate_sweep, u_curve, write_sweep


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A simulated sweep with two sizes, two kinds, an adaptive design tag and a failed trial
    (read only by the tests, so one store serves them all)."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder}/mlflow.db"
    df = simulate_sweep(
        curve=u_curve(size_exponent=0.5),
        num_classes=(2, 10, 50, 200),
        kinds={"manual": 0.0, "random": 0.01},
        data_fractions=(0.25, 1.0),
        seeds=4,
        noise=0.005,
        random_state=3,
    )
    parent = write_sweep(df, "sweep", uri, bulk=True, artifact_location=str(folder / "art"))
    design = {"initial": 2, "step": 2, "max": 4, "stop_when": ["gain"]}
    client = MlflowClient(uri)
    client.set_tag(parent, REPLICATES, json.dumps(design))
    failed = client.create_run(
        client.get_experiment_by_name("sweep").experiment_id,
        tags={"granularity.role": "trial", "granularity.failure": "CUDA out of memory"},
    )
    client.set_terminated(failed.info.run_id, "FAILED")
    return uri


def test_the_report_from_an_export_is_the_report_from_mlflow(store, tmp_path):
    path = write_export(load_sweep("sweep", store), tmp_path / "runs.jsonl.gz")
    from_mlflow = write_report("sweep", store, tmp_path / "a", n_boot=200, log_artifacts=False)
    from_file = write_report_from_export(path, tmp_path / "b", n_boot=200)
    text = from_mlflow.read_text()
    assert "## Adaptive replicates" in text  # the parent's design travelled with the export
    assert "1 x CUDA out of memory" in text  # and so did the failed trial
    assert from_file.read_text() == text


def test_an_export_restores_the_frame_and_its_bytes_depend_only_on_the_runs(store, tmp_path):
    sweep = load_sweep("sweep", store)
    first = write_export(sweep, tmp_path / "one.jsonl.gz")
    second = write_export(load_sweep("sweep", store), tmp_path / "two.jsonl.gz")
    assert first.read_bytes() == second.read_bytes()
    back = read_export(first)
    pd.testing.assert_frame_equal(back.runs, sweep.runs)
    assert back.sweep_tags == sweep.sweep_tags and REPLICATES in back.sweep_tags
    finished = load_export(first)
    pd.testing.assert_frame_equal(finished, sweep.finished())
    # load_runs types a column by the runs it read (without the failed run `level` is int and
    # the all-missing `failure` holds None), so the values agree, not every dtype.
    direct = load_runs("sweep", store)
    held = [c for c in direct if direct[c].notna().any()]
    assert list(finished.columns) == list(direct.columns) and "target_error" in held
    pd.testing.assert_frame_equal(finished[held], direct[held], check_dtype=False)
    assert len(load_export(first, statuses=ALL_STATUSES)) == len(finished) + 1
    plain = write_export(sweep, tmp_path / "runs.jsonl")
    header = json.loads(plain.read_text().splitlines()[0])
    assert header["format"] == "granularity-export" and "target_error" in header["columns"]


def test_a_file_that_is_not_an_export_is_refused_by_name(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"a": 1}\n')
    with pytest.raises(ExportFormatError, match="not a granularity export"):
        read_export(bad)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="granularity")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def test_cli_export_then_analyze_from_the_file(store, tmp_path, capsys):
    out = tmp_path / "runs.jsonl.gz"
    assert _run(["export", "sweep", "--tracking-uri", store, "--out", str(out)]) == 0
    assert (
        _run(["analyze", "--from", str(out), "--out", str(tmp_path / "r"), "--n-boot", "100"]) == 0
    )
    assert "## Verdicts" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "sweep", "--out", "runs.csv"], "must end in one of .jsonl.gz, .jsonl"),
        (["export", "nope", "--out", "runs.jsonl.gz"], "Unknown experiment (nope)"),
        (["analyze"], "give an EXPERIMENT or --from FILE, not neither"),
        (["analyze", "sweep", "--from", "runs.jsonl.gz"], "not both"),
        (["analyze", "--from", "missing.jsonl.gz"], "No export file at 'missing.jsonl.gz'"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_creates_nothing(
    store, tmp_path, monkeypatch, capsys, argv, message
):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert _run([*argv, "--tracking-uri", store]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_notebook_api_loads_an_export_fits_and_returns_tables_and_figures(store, tmp_path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    import analysis

    path = analysis.write_export(analysis.load_sweep("sweep", store), tmp_path / "r.jsonl.gz")
    a = analysis.analyze(analysis.load_export(path), n_boot=100)
    tables = a.tables()
    assert {"gain", "ucurve", "kinds_pooled", "pretraining"} <= set(tables)
    assert all(isinstance(t, pd.DataFrame) for t in tables.values())
    assert isinstance(analysis.figures.plot_gain_over_target(a), Figure)
    assert isinstance(analysis.figures.plot_forest(a), Figure)
    assert [claim for claim, _ in analysis.verdicts.verdicts(a)][1].startswith("Some level finer")
    with pytest.raises(AttributeError, match="public names: load_runs"):
        _ = analysis.load_everything
    # In a fresh interpreter nothing is imported yet: every name resolves on first use.
    names = ", ".join(f"analysis.{n}" for n in analysis.__all__)
    code = f"import analysis, sys; assert 'pandas' not in sys.modules; {names}"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


EXPORTS = sorted((Path(__file__).resolve().parent.parent / "docs").glob("*/runs.jsonl.gz"))


@pytest.mark.slow
@pytest.mark.parametrize("export", EXPORTS, ids=[p.parent.name for p in EXPORTS])
def test_a_committed_report_regenerates_from_its_committed_export(export, tmp_path):
    # An estimator or report change that would alter a shipped report fails here until the
    # report is regenerated: `granularity analyze --from docs/X/runs.jsonl.gz --out docs/X`.
    assert _run(["analyze", "--from", str(export), "--out", str(tmp_path)]) == 0
    committed = (export.parent / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == committed
