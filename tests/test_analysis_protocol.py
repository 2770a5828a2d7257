"""The protocol x level interaction (analysis/protocol.py, E1) against planted truths."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from analysis.load import Sweep
from analysis.protocol import MODE, ProtocolInteraction, crosses_protocols
from analysis.report import render_report
from contracts import ANALYSIS_CONFIG
from testing.simulate import simulate_sweep, u_curve

LEVELS = (2, 5, 10, 20)  # the target level has 2 classes
FULL_BETTER = 0.1  # full finetuning lowers every pretrained arm's error by this much


def _two_protocols(extra: float, random_state: int, seeds: int = 4) -> pd.DataFrame:
    """Linear-probe and full-finetuning trials from the same pretrained arms: full finetuning
    lowers the error by FULL_BETTER everywhere and by ``extra`` more at 20 classes (the planted
    interaction); each full trial has its own noise."""
    base = simulate_sweep(num_classes=LEVELS, seeds=seeds, noise=0.005, random_state=random_state)
    scratch = base[base["hierarchy"] == "scratch"].assign(**{MODE: "linear"})
    tuned = base[base["hierarchy"] != "scratch"]
    rng = np.random.default_rng(1000 + random_state)  # not the simulation's own stream
    full = tuned.assign(**{MODE: "full"})
    full["target_error"] = (
        tuned["target_error"]
        - FULL_BETTER
        - np.where(tuned["num_classes"] == 20, extra, 0.0)
        + rng.normal(0.0, 0.005, len(tuned))
    )
    return pd.concat([tuned.assign(**{MODE: "linear"}), full, scratch], ignore_index=True)


def _folds(extra: float, fold_offset: float = 0.05) -> pd.DataFrame:
    """Two folds of the design, fold 1's errors all ``fold_offset`` up."""
    one = _two_protocols(extra, 1).assign(**{"dataset.fold": "0"})
    two = _two_protocols(extra, 2).assign(**{"dataset.fold": "1"})
    two["target_error"] += fold_offset
    return pd.concat([one, two], ignore_index=True)


def _covers(t: pd.DataFrame, value: str, truth: np.ndarray) -> np.ndarray:
    return ((t[f"{value}_ci_low"] <= truth) & (truth <= t[f"{value}_ci_high"])).to_numpy()


def test_planted_interaction_is_covered_detected_and_pooled_over_blocks():
    p = ProtocolInteraction(block="dataset.fold").fit(_folds(extra=0.03))
    t = p.table_
    assert list(dict.fromkeys(t["stratum"])) == ["pooled", "fold=0", "fold=1"]
    assert set(t["num_classes"]) == {5.0, 10.0, 20.0}  # at or finer than the target, not it
    pooled = t[t["stratum"] == "pooled"].set_index("num_classes").sort_index()
    assert (pooled["n"] == 8).all()  # 2 folds x 4 seeds: the (block, seed) units
    assert (t.loc[t["stratum"] != "pooled", "n"] == 4).all()
    k = pooled.index.to_numpy(float)
    curve = u_curve()
    gain = curve(np.array([2.0]), 1.0, "manual") - curve(k, 1.0, "manual")
    interaction = np.where(k == 20, 0.03, 0.0)
    covered = []
    for stratum, rows in t.groupby("stratum"):
        rows = rows.set_index("num_classes").sort_index()
        covered += [
            *_covers(rows, "gain_linear", gain),
            *_covers(rows, "gain_full", gain + interaction),
        ]
        covered += list(_covers(rows, "interaction", interaction))
        assert rows.loc[20.0, "interaction_p_adj"] < 0.05, stratum
    # 27 intervals of 4-8 units each: nominal coverage >= 95%, so a miss or two by chance.
    assert np.mean(covered) >= 0.9, covered
    assert _covers(pooled, "interaction", interaction).all()
    np.testing.assert_allclose(
        pooled["error_linear"] - pooled["error_full"], 0.1 + interaction, atol=0.01
    )
    assert (pooled["ci_label"] == "Holm-consistent 95%").all()
    omni = p.omnibus_.set_index("stratum")
    assert omni.loc["pooled", "n_levels"] == 4 and omni.loc["pooled", "n_units"] == 8
    assert (omni["pvalue"] < 0.01).all()


def test_a_block_offset_in_the_protocol_effect_cancels_within_units():
    """Fold 1's full finetuning 0.05 better at every level: a (block, seed) unit pairs it away,
    so the interaction (gains over the same unit's target level) does not move."""
    plain = _folds(extra=0.03)
    shifted = plain.copy()
    fold1_full = (shifted["dataset.fold"] == "1") & (shifted[MODE] == "full")
    shifted.loc[fold1_full, "target_error"] -= 0.05
    a = ProtocolInteraction(block="dataset.fold").fit(plain).table_
    b = ProtocolInteraction(block="dataset.fold").fit(shifted).table_
    for column in ("interaction", "interaction_ci_low", "interaction_ci_high", "gain_full"):
        np.testing.assert_allclose(a[column], b[column], atol=1e-9)


def test_no_interaction_planted_is_rarely_detected():
    omnibus, levels = [], []
    for r in range(10):
        p = ProtocolInteraction().fit(_two_protocols(extra=0.0, random_state=20 + r, seeds=6))
        omnibus.append(float(p.omnibus_["pvalue"].iloc[0]))
        levels.append(bool((p.table_["interaction_p_adj"] < 0.05).any()))
    assert sum(p < 0.05 for p in omnibus) <= 2 and sum(levels) <= 2, (omnibus, levels)
    assert all(math.isfinite(p) for p in omnibus)


def test_the_report_has_the_protocol_section_only_when_both_protocols_are_crossed(tmp_path):
    df = _folds(extra=0.03)
    assert crosses_protocols(df) and not crosses_protocols(df[df[MODE] == "linear"])
    tags = {ANALYSIS_CONFIG: json.dumps({"block": "fold"})}
    sweep = Sweep("e1", df.assign(status="FINISHED", failure=None), sweep_tags=tags)
    text = render_report(sweep, tmp_path / "both", n_boot=50)[0].read_text(encoding="utf-8")
    section = text.split("## Protocol x level interaction (linear probe vs full finetuning)")[1]
    for heading in (
        "### Pooled over the blocks of fold (replicate unit: fold x seed)",
        "### Block fold=0",
        "### Block fold=1",
    ):
        assert heading in section
    assert "| gain_linear [CI] | gain_full [CI] | interaction [CI] | interaction p_adj |" in section
    assert "Interaction detected (Holm, adjusted p < 0.05) at: manual 20 classes" in section
    assert "Omnibus protocol x level: manual (fraction 1): F(3, 21) = " in section
    one = Sweep("e1", df[df[MODE] == "full"].assign(status="FINISHED", failure=None), tags)
    text = render_report(one, tmp_path / "one", n_boot=50)[0].read_text(encoding="utf-8")
    assert "Protocol x level" not in text
