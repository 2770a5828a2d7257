"""The report: files written, verdicts stated, artifacts on the parent run, the CLI's exit codes."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from analysis import cli
from analysis.report import write_report
from testing.simulate import simulate_sweep, u_curve, write_sweep


def _store(tmp_path, monkeypatch, **kwargs):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    df = simulate_sweep(**kwargs)
    parent = write_sweep(df, "sweep", uri, bulk=True, artifact_location=str(tmp_path / "artifacts"))
    return uri, parent


def test_report_writes_markdown_and_plots_and_logs_them_to_the_parent(tmp_path, monkeypatch):
    uri, parent = _store(
        tmp_path,
        monkeypatch,
        curve=u_curve(size_exponent=0.5),
        kinds={"manual": 0.0, "cluster_within": 0.005, "cluster_global": 0.01, "random": 0.02},
        data_fractions=(0.1, 1.0),
        seeds=6,
        noise=0.005,
        random_state=0,
    )
    path = write_report("sweep", uri, tmp_path / "report", n_boot=300)
    text = path.read_text()
    figures = ("gain_over_target", "forest", "gain_vs_size", "alignment", "ucurves", "heatmap")
    for name in ("report.md", *(f"{f}.png" for f in figures)):
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    assert "## Verdicts" in text and "## The three open questions" in text
    assert (
        "manual beats random at matched class counts finer than the target | **supported**" in text
    )
    assert (
        "at or finer than the target (two-lines test), and where it bottoms | **supported**" in text
    )
    assert "(the optimum moves finer) | **supported**" in text
    logged = {a.path for a in MlflowClient(uri).list_artifacts(parent, "analysis")}
    assert {"analysis/report.md", "analysis/ucurves.png"} <= logged


def test_report_says_what_a_small_sweep_cannot_answer(tmp_path, monkeypatch):
    uri, _ = _store(tmp_path, monkeypatch, num_classes=(2, 10, 50), seeds=1, scratch_error=None)
    text = write_report("sweep", uri, tmp_path / "r", n_boot=100).read_text()
    assert "single seed" in text
    assert "not answerable from this sweep: it lacks a second size (data fraction)" in text.lower()
    assert "it lacks the random arm" in text
    assert "at least 4 granularity levels" in text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="granularity")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_analyze_writes_the_report(tmp_path, monkeypatch, capsys):
    uri, _ = _store(tmp_path, monkeypatch, seeds=2)
    args = _parser().parse_args(
        [
            "analyze",
            "sweep",
            "--tracking-uri",
            uri,
            "--out",
            str(tmp_path / "out"),
            "--n-boot",
            "100",
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "out" / "report.md").exists()


@pytest.mark.parametrize("experiment", ["missing"])
def test_cli_unknown_experiment_is_a_clear_nonzero_exit(tmp_path, monkeypatch, capsys, experiment):
    uri, _ = _store(tmp_path, monkeypatch, seeds=2)
    args = _parser().parse_args(["analyze", experiment, "--tracking-uri", uri])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "Unknown experiment (missing)" in err and "sweep" in err.split("known:")[1]


def test_an_adaptive_sweep_gets_its_section_with_the_method_and_the_stops(tmp_path, monkeypatch):
    import json

    from contracts import REPLICATES

    uri, parent = _store(
        tmp_path,
        monkeypatch,
        num_classes=(2, 10, 50, 200),
        kinds={"manual": 0.0, "random": 0.0},
        seeds=6,
        noise=0.005,
    )
    design = {"initial": 3, "step": 2, "max": 6, "stop_when": ["gain", "hierarchy", "u_test"]}
    MlflowClient(uri).set_tag(parent, REPLICATES, json.dumps(design))
    text = write_report("sweep", uri, tmp_path / "r", n_boot=100).read_text()
    section = text[text.index("## Adaptive replicates") :]
    assert "Lan-DeMets alpha spending (O'Brien-Fleming-type)" in section and "[3, 5, 6]" in section
    # The gains over scratch (0.3 against ~0.2) settle at the first look; manual vs random
    # (no difference planted) runs to max.
    assert "gain of manual/level1/f1/twolayer over scratch | 3 | decided" in section
    assert "manual vs random (f1/twolayer, 3 class counts) | 6 | max" in section
    assert "Seeds per cell" in section
    MlflowClient(uri).delete_tag(parent, REPLICATES)
    text = write_report("sweep", uri, tmp_path / "r2", n_boot=100).read_text()
    assert "## Adaptive replicates" not in text


def test_pretraining_diagnostics_average_seeds_once_and_leave_scratch_out():
    import pandas as pd

    from analysis.diagnostics import pretraining_table

    rows = [
        # (hierarchy, level, classes, seed, train, val): seed 0's level-1 pretraining is shared
        # by two trials (same key), so it must count once next to seed 1's.
        ("manual", 1, 8, 0, 0.10, 0.20),
        ("manual", 1, 8, 0, 0.10, 0.20),
        ("manual", 1, 8, 1, 0.30, 0.40),
        ("manual", 2, 32, 0, 0.70, 0.90),
        ("manual", 2, 32, 1, 0.50, 0.70),
        ("scratch", 0, 4, 0, float("nan"), float("nan")),
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "hierarchy",
            "level",
            "num_classes",
            "seed",
            "pretrain/error",
            "pretrain/val_error",
        ],
    ).assign(level_name=lambda d: "L" + d["level"].astype(str), data_fraction=1.0, backbone="b")
    t = pretraining_table(df).set_index("num_classes")
    assert list(t.index) == [8, 32] and list(t["n"]) == [2, 2]
    assert np.isclose(t.loc[8, "train_error"], 0.2) and np.isclose(t.loc[8, "val_error"], 0.3)
    assert t.loc[32, "train_ci_low"] < 0.6 < t.loc[32, "train_ci_high"]
    assert pretraining_table(df.drop(columns=["pretrain/error"])).empty


def test_the_forest_plot_shows_the_numbers_the_verdicts_state(tmp_path, monkeypatch):
    from analysis.figures import verdict_contrasts
    from analysis.formatting import fmt_ci
    from analysis.report import analyze
    from analysis.verdicts import verdicts

    df = simulate_sweep(
        curve=u_curve(size_exponent=0.5),
        kinds={"manual": 0.0, "random": 0.02},
        data_fractions=(0.25, 1.0),
        seeds=4,
        noise=0.005,
        random_state=1,
    )
    a = analyze(df, n_boot=100)
    said = dict(verdicts(a))["manual beats random at matched class counts finer than the target"]
    shown = verdict_contrasts(a).query("claim == 'manual beats random'")
    assert len(shown) == 2 + len(
        a.comparison.cells_.query("a == 'manual' and b == 'random' and finer")
    )
    for x in shown.itertuples():  # pooled per fraction, then per class count
        assert fmt_ci(x.estimate, x.ci_low, x.ci_high) in said
        assert x.significant == (x.p_adj < 0.05)
