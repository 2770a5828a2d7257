"""Several scratch arms (plain and compute-matched budgets): baselines everywhere, never kinds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.figures import kind_colors, plot_ucurves, scratch_styles
from analysis.fit import analyze
from analysis.render import render_markdown
from analysis.trial_table import is_scratch, pretrained_arms, scratch_labels
from analysis.variants import AnalysisConfig, views
from analysis.verdicts import primary_kind
from testing.simulate import simulate_sweep, u_curve

LEVELS = (2, 5, 10, 20)
PLAIN_PENALTY = 0.05  # the plain (pretraining-budget) scratch arm's planted extra error


def _two_scratch_arms(level_name: object = math.nan, seeds: int = 6) -> pd.DataFrame:
    """A manual sweep with ``scratch`` (error 0.3) and ``scratch_plain`` (0.35, same seeds),
    the second logged with no level (``level_name``: NaN, "" or "scratch")."""
    df = simulate_sweep(num_classes=LEVELS, seeds=seeds, noise=0.005, random_state=4)
    df["hierarchy_kind"] = np.where(df["hierarchy"] == "scratch", "scratch", df["hierarchy"])
    plain = df[df["hierarchy"] == "scratch"].assign(
        hierarchy="scratch_plain", level_name=level_name, trial_key=lambda d: d["trial_key"] + "p"
    )
    plain["target_error"] += PLAIN_PENALTY
    df["pretrain/error"] = np.where(df["hierarchy"] == "scratch", np.nan, 0.1)
    plain["pretrain/error"] = np.nan
    return pd.concat([df, plain], ignore_index=True)


@pytest.mark.parametrize("level_name", [math.nan, "", "scratch"])
def test_one_helper_finds_every_scratch_arm_whatever_its_level_name(level_name):
    df = _two_scratch_arms(level_name)
    assert scratch_labels(df) == ["scratch", "scratch_plain"]
    assert set(df.loc[is_scratch(df), "hierarchy"]) == {"scratch", "scratch_plain"}
    assert set(pretrained_arms(df)["hierarchy"]) == {"manual"}
    # Without level columns, the label alone still marks the classic arm.
    bare = df[["hierarchy", "seed"]]
    assert scratch_labels(bare) == ["scratch"]


def test_gains_over_each_scratch_arm_recover_the_planted_baselines():
    df = _two_scratch_arms()
    a = analyze(df, n_boot=50)
    t = a.gain.table_
    assert set(t["baseline"]) == {"scratch", "scratch_plain", "target_level"}
    assert set(t["hierarchy"]) == {"manual"}  # no scratch arm is an arm with a gain
    curve = u_curve()(np.asarray(LEVELS, dtype=float), 1.0, "manual")
    for name, error in (("scratch", 0.3), ("scratch_plain", 0.3 + PLAIN_PENALTY)):
        g = t[t["baseline"] == name].set_index("num_classes").sort_index()
        truth = error - curve
        assert len(g) == len(LEVELS) and (g["n"] == 6).all()
        assert ((g["ci_low"] <= truth) & (truth <= g["ci_high"])).all(), (name, g, truth)
    over = t[t["baseline"] == "scratch"].set_index("num_classes")["gain"]
    plain = t[t["baseline"] == "scratch_plain"].set_index("num_classes")["gain"]
    np.testing.assert_allclose(plain - over, PLAIN_PENALTY, atol=0.01)


def test_scratch_plain_is_no_curve_kind_verdict_or_pretraining_row():
    df = _two_scratch_arms()
    a = analyze(df, n_boot=50)
    assert set(a.ucurve.results_["hierarchy"]) == {"manual"}
    assert set(a.ucurve.curve_["hierarchy"]) == {"manual"}
    assert set(a.size.heatmap_.reset_index()["hierarchy"]) <= {"manual"}
    assert a.comparison.pooled_.empty and a.comparison.cells_.empty  # one kind: no pairs
    assert set(a.claim.results_["hierarchy"]) == {"manual"}
    assert set(a.pretraining["hierarchy"]) == {"manual"}
    assert primary_kind(df[df["hierarchy"] != "manual"]) is None
    text = render_markdown(a, "two scratch arms", {})
    assert "- hierarchy kinds: manual; scratch baselines: scratch, scratch_plain" in text
    assert "| scratch_plain | manual |" in text  # a gain row over the plain baseline


def test_each_scratch_arm_is_its_own_horizontal_line():
    import matplotlib

    matplotlib.use("Agg")
    a = analyze(_two_scratch_arms(), n_boot=50)
    styles = scratch_styles(a.df)
    assert list(styles) == ["scratch", "scratch_plain"] and len(set(styles.values())) == 2
    colors = kind_colors(a)
    assert colors["scratch"] != colors["scratch_plain"] and "manual" in colors
    fig = plot_ucurves(a)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert {"manual", "scratch", "scratch_plain"} <= set(lines)
    for label, error in (("scratch", 0.3), ("scratch_plain", 0.3 + PLAIN_PENALTY)):
        y = lines[label].get_ydata()
        assert y[0] == y[-1] and abs(y[0] - error) < 0.01  # horizontal, at the arm's mean


def test_every_finetune_mode_view_holds_both_scratch_arms():
    df = _two_scratch_arms()
    tuned = df[~is_scratch(df)]
    df = pd.concat(
        [
            tuned.assign(**{"finetune.mode": "linear"}),
            tuned.assign(**{"finetune.mode": "full"}),
            df[is_scratch(df)].assign(**{"finetune.mode": "linear"}),
        ],
        ignore_index=True,
    )
    got = views(df, AnalysisConfig())
    assert [v.label for v in got] == ["finetune mode: full", "finetune mode: linear"]
    for view in got:
        assert scratch_labels(view.df) == ["scratch", "scratch_plain"]
