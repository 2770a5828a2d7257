"""Crossed factors in the analysis (analysis/variants.py): planted truths survive the views."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis import cli
from analysis import estimators as est
from analysis.export import read_export, write_export
from analysis.figures import verdict_contrasts, write_figures
from analysis.fit import analyze
from analysis.hard_examples import reference_hard_examples
from analysis.load import Sweep
from analysis.render import render_markdown
from analysis.report import render_report
from analysis.variants import AnalysisConfig, config_of, hard_examples_within_blocks, views
from analysis.verdicts import verdicts
from contracts import ANALYSIS_CONFIG
from testing.simulate import simulate_sweep

MODE = "finetune.mode"
LEVELS = (2, 5, 10, 20)


def _sweep(name: str, trials: pd.DataFrame, tags: dict[str, str] | None = None) -> Sweep:
    """Finished trial runs as a Sweep (load_runs' status and failure columns)."""
    return Sweep(name, trials.assign(status="FINISHED", failure=None), sweep_tags=tags or {})


def _gain(df: pd.DataFrame) -> pd.DataFrame:
    """The gain over scratch per finer level (the manual kind, one data fraction)."""
    t = est.BaselineGain(metric="target_error", alpha=0.05).fit(df).table_
    t = t[(t["baseline"] == "scratch") & (t["hierarchy"] == "manual")]
    return t.set_index("num_classes").sort_index()


def _two_modes(full_advantage: float) -> pd.DataFrame:
    """Linear and full trials of one sweep: full finetuning lowers every pretrained arm's error
    by ``full_advantage``; scratch trials once, logged with the default mode (as the planner
    does)."""
    base = simulate_sweep(num_classes=LEVELS, seeds=6, noise=0.002, random_state=1)
    scratch = base[base["hierarchy"] == "scratch"].assign(**{MODE: "linear"})
    tuned = base[base["hierarchy"] != "scratch"]
    full = tuned.assign(**{MODE: "full", "target_error": tuned["target_error"] - full_advantage})
    return pd.concat([tuned.assign(**{MODE: "linear"}), full, scratch], ignore_index=True)


def test_linear_and_full_are_analysed_apart_each_with_its_planted_gain():
    df = _two_modes(full_advantage=0.1)
    got = {v.label: v for v in views(df, AnalysisConfig())}
    assert list(got) == ["finetune mode: full", "finetune mode: linear"]
    n_scratch = int((df["hierarchy"] == "scratch").sum())
    for view in got.values():  # scratch (no finetuning) is every mode's baseline
        assert int((view.df["hierarchy"] == "scratch").sum()) == n_scratch
    linear, full = _gain(got["finetune mode: linear"].df), _gain(got["finetune mode: full"].df)
    truth = 0.3 - (0.2 + 0.01 * (np.log(linear.index.to_numpy(float)) - math.log(40)) ** 2)
    np.testing.assert_allclose(linear["gain"], truth, atol=0.01)
    np.testing.assert_allclose(full["gain"] - linear["gain"], 0.1, atol=0.005)
    # Pooled as replicates, the two modes would average: the gap the views keep apart.
    pooled = _gain(df)
    np.testing.assert_allclose(pooled["gain"] - linear["gain"], 0.05, atol=0.005)


def _blocks(offset: float) -> pd.DataFrame:
    """Two folds (block option `fold`) of the same design; fold 1's errors all ``offset`` up."""
    base = simulate_sweep(num_classes=LEVELS, seeds=5, noise=0.01, random_state=2)
    other = simulate_sweep(num_classes=LEVELS, seeds=5, noise=0.01, random_state=3)
    other = other.assign(target_error=other["target_error"] + offset)
    return pd.concat(
        [base.assign(**{"dataset.fold": "0"}), other.assign(**{"dataset.fold": "1"})],
        ignore_index=True,
    )


def test_a_block_offset_does_not_widen_the_pooled_interval():
    config = AnalysisConfig(block="fold")
    pooled = {}
    for offset in (0.0, 0.5):
        got = views(_blocks(offset), config)
        assert [v.label for v in got] == [
            "pooled over the blocks of fold (replicate unit: block x seed)",
            "block fold=0",
            "block fold=1",
        ]
        pooled[offset] = _gain(got[0].df)
        assert (pooled[offset]["n"] == 10).all()  # 2 folds x 5 seeds, each its own pair
    # Pairs within (fold, seed): the offset cancels in every difference, so the interval is
    # the one without it (unpaired across folds it would widen by ~offset).
    for column in ("gain", "ci_low", "ci_high"):
        np.testing.assert_allclose(pooled[0.5][column], pooled[0.0][column], atol=1e-9)
    assert (pooled[0.5]["ci_high"] - pooled[0.5]["ci_low"] < 0.05).all()


def test_size_maps_an_option_to_the_size_axis_and_the_slope_is_fitted_on_it():
    def curve(k: np.ndarray, size: float, kind: str) -> np.ndarray:
        return 0.3 - 0.02 * np.log(k) * np.log(size)  # gain at k over 2 classes grows with size

    sim = simulate_sweep(
        curve=curve, num_classes=LEVELS, data_fractions=(4.0, 16.0, 64.0), noise=0.001, seeds=4
    )
    crossed = sim.assign(
        **{"dataset.renders": sim["data_fraction"].map(lambda f: f"{f:g}"), "data_fraction": 1.0}
    )
    (view,) = views(crossed, AnalysisConfig(size="renders"))
    assert view.label == "" and view.size_label == "renders"
    assert sorted(view.df["data_fraction"].unique()) == [4.0, 16.0, 64.0]
    slopes = est.SizeGranularity(metric="target_error", n_boot=50).fit(view.df).slopes_
    slopes = slopes[slopes["hierarchy"] == "manual"].set_index("num_classes").sort_index()
    truth = 0.02 * (np.log(slopes.index.to_numpy(float)) - math.log(2))
    np.testing.assert_allclose(slopes["slope"], truth, atol=0.002)


def test_a_plain_sweep_gets_the_report_it_got_before(tmp_path):
    sweep = _sweep("plain", simulate_sweep(num_classes=LEVELS, seeds=3))
    report, _ = render_report(sweep, tmp_path / "new", n_boot=50)
    # The report before crossed factors: every estimator on the finished trials, one section each.
    a = analyze(sweep.finished(), n_boot=50, status_counts={"FINISHED": len(sweep.runs)})
    a.failures = pd.Series(dtype=int)  # as analyze_sweep counts them (none failed)
    (tmp_path / "old").mkdir()
    before = render_markdown(a, "plain", write_figures(a, tmp_path / "old"))
    assert report.read_text(encoding="utf-8") == before


def test_a_crossed_report_has_one_section_group_per_mode_with_its_figures(tmp_path):
    report, _ = render_report(_sweep("modes", _two_modes(full_advantage=0.1)), tmp_path, n_boot=50)
    text = report.read_text(encoding="utf-8")
    for mode in ("full", "linear"):
        assert f"## Granularity sweep report: modes (finetune mode: {mode})" in text
        assert f"](finetune_mode_{mode}/ucurves.png)" in text
        assert (tmp_path / f"finetune_mode_{mode}" / "ucurves.png").is_file()
    assert "data:image/png" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_the_config_travels_in_the_export_and_flags_override_it(tmp_path):
    tags = {ANALYSIS_CONFIG: json.dumps({"size": "renders", "block": "fold"})}
    sweep = _sweep("x", simulate_sweep(num_classes=LEVELS, seeds=2), tags)
    back = read_export(write_export(sweep, tmp_path / "runs.jsonl.gz")).sweep_tags
    assert config_of(back) == AnalysisConfig(size="renders", block="fold")
    assert config_of(back, block="seed") == AnalysisConfig(size="renders", block="seed")
    assert config_of({}) == AnalysisConfig()


@pytest.mark.parametrize("flag", ["--size", "--block"])
def test_a_flag_naming_no_crossed_option_exits_2_with_one_line(tmp_path, capsys, flag):
    export = write_export(_sweep("folds", _blocks(0.0)), tmp_path / "runs.jsonl.gz")
    parser = argparse.ArgumentParser(prog="granularity")
    cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "report"
    args = parser.parse_args(["analyze", "--from", str(export), "--out", str(out), flag, "nope"])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{flag} 'nope' is not a crossed dataset option" in err and "accepted: fold" in err
    assert not out.exists()


def test_hard_examples_of_a_pooled_view_come_from_the_same_block(tmp_path):
    from trainables.trial import encode_correct

    n, hard_sets = 50, {"0": slice(0, 10), "1": slice(40, 50)}  # each fold's own hard examples
    folds = []
    for fold, seeds in (("0", 3), ("1", 4)):
        sim = simulate_sweep(num_classes=LEVELS, seeds=seeds, random_state=int(fold))
        correct = np.ones(n, dtype=bool)
        correct[hard_sets[fold]] = False  # every model of the fold misses exactly those
        sim = sim.drop(columns=["target_error_hard", "target_error_easy"])
        folds.append(sim.assign(**{"dataset.fold": fold, "test_correct": encode_correct(correct)}))
    trials = pd.concat(folds, ignore_index=True)
    view = views(trials, AnalysisConfig(block="fold"))[0]
    df, note = hard_examples_within_blocks(view, "auto", "target_error")
    assert note.startswith("within each fold block: hard examples (real data)")
    assert (df["target_error_hard"] == 1.0).all() and (df["target_error_easy"] == 0.0).all()
    # Pooled across folds, fold 1's four scratch seeds would outvote fold 0's three.
    across, _ = reference_hard_examples(view.df)
    assert (across.loc[across["dataset.fold"] == "0", "target_error_hard"] == 0.0).all()
    tags = {ANALYSIS_CONFIG: json.dumps({"block": "fold"})}
    report, _ = render_report(_sweep("folds", trials, tags), tmp_path, n_boot=20)
    assert "Definition: within each fold block: hard examples" in report.read_text(encoding="utf-8")


def test_a_block_of_one_seed_and_an_empty_hard_table_still_get_verdicts_and_contrasts():
    # One seed per block at two sizes (the controls smoke's blocks): no P(argmin) to quote.
    one_seed = simulate_sweep(num_classes=LEVELS, data_fractions=(0.5, 1.0), seeds=1)
    a = analyze(one_seed, n_boot=20)
    assert a.size.argmin_["p_argmin"].isna().all()
    names = [name for name, _ in verdicts(a)]
    assert any("more data" in name for name in names)
    a.hard = pd.DataFrame()  # the target level not among the levels: no hard-example rows
    contrasts = verdict_contrasts(a)
    assert not (contrasts["claim"] == "fine beats coarse on hard examples").any()


def _crossing_at_4(k: np.ndarray, size: float, kind: str) -> np.ndarray:
    """The 20-class level's gain over the target (2 classes) is 0.02 log(size / 4): it crosses 0
    at renders_per_font 4."""
    return 0.2 - np.where(np.asarray(k) == 20, 0.02 * np.log(size / 4.0), 0.0)


def test_a_size_option_renders_its_size_sections_and_verdicts_name_the_option(tmp_path):
    sim = simulate_sweep(
        curve=_crossing_at_4,
        num_classes=LEVELS,
        data_fractions=(1.0, 4.0, 16.0),
        seeds=6,
        noise=0.003,
        random_state=7,
    )
    crossed = sim.assign(
        **{
            "dataset.renders_per_font": sim["data_fraction"].map(lambda f: f"{f:g}"),
            "data_fraction": 1.0,
        }
    )
    tags = {ANALYSIS_CONFIG: json.dumps({"size": "renders_per_font"})}
    report, a = render_report(_sweep("sizes", crossed, tags), tmp_path, n_boot=100)
    text = report.read_text(encoding="utf-8")
    slopes = a.size.slopes_.set_index("num_classes")
    row = slopes.loc[20.0]
    assert row.ci_low <= 0.02 <= row.ci_high and row.p_adj < 0.05
    assert row.crossover_fraction == pytest.approx(4.0, rel=0.3)
    assert row.crossover.startswith("at renders_per_font ")
    assert set(a.size.argmin_["data_fraction"]) == {1.0, 4.0, 16.0}
    assert "P(argmin) per level and size" in text and (tmp_path / "gain_vs_size.png").is_file()
    assert "gain over the target level regressed on log(renders_per_font)" in text
    verdicts_section = text.split("## Verdicts")[1].split("## The three open questions")[0]
    size_row = next(
        line for line in verdicts_section.splitlines() if "(the optimum moves finer)" in line
    )
    assert (
        "crossover at renders_per_font " in size_row and "renders_per_font 16: P(argmin" in size_row
    )
    assert "fraction" not in verdicts_section  # every size is named by the option
