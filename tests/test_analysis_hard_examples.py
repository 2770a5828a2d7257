"""Hard examples on real data: a reference family (scratch) defines them; the old target level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import estimators as est
from analysis.hard_examples import (
    decode_correct,
    derive_hard_examples,
    easy_hard_table,
    reference_hard_examples,
)
from analysis.report import analyze, render_markdown
from trainables.trial import MAX_CORRECT_EXAMPLES, encode_correct

N_TEST = 400


def test_the_tag_round_trips_between_trial_and_analysis():
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 960):
        correct = rng.random(n) < 0.7
        tag = encode_correct(correct)
        assert len(tag) < 8000  # one MLflow tag
        assert np.array_equal(decode_correct(tag), correct)
    assert encode_correct(np.ones(MAX_CORRECT_EXAMPLES + 1, bool)) is None
    assert len(encode_correct(np.ones(MAX_CORRECT_EXAMPLES, bool))) <= 8000
    assert decode_correct(None) is None and decode_correct("garbage") is None


def _rows(seeds: int, *, shared_hard: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """A manual target level (4 classes) that fails on `shared_hard` plus noise, and a finer level
    that gets half of those right; both 10% noise elsewhere."""
    rows = []
    for seed in range(seeds):
        for level, name, k, hard_acc in ((0, "coarse", 4, 0.0), (1, "fine", 16, 0.5)):
            correct = rng.random(N_TEST) > 0.1
            correct[shared_hard] = rng.random(shared_hard.sum()) < hard_acc
            rows.append(
                {
                    "hierarchy": "manual",
                    "level": level,
                    "level_name": name,
                    "num_classes": k,
                    "data_fraction": 1.0,
                    "backbone": "cnn",
                    "seed": seed,
                    "target": "coarse",
                    "target_error": 1 - correct.mean(),
                    "test_correct": encode_correct(correct),
                }
            )
    return pd.DataFrame(rows)


def test_hard_examples_are_the_other_seeds_target_level_mistakes():
    rng = np.random.default_rng(1)
    shared_hard = np.zeros(N_TEST, bool)
    shared_hard[:80] = True  # 20% of the test set: what coarse pretraining always misses
    df = _rows(5, shared_hard=shared_hard, rng=rng)
    target_rows, _ = est.BaselineGain(metric="target_error").target_level_rows(df)
    assert set(target_rows["level_name"]) == {"coarse"}
    out, note = derive_hard_examples(df, target_rows, mode="target_level")
    assert "other seeds" in note
    # The definition recovers the planted hard set (plus the odd shared noise mistake).
    assert out["hard_fraction"].between(0.19, 0.23).all()
    coarse, fine = out[out["level_name"] == "coarse"], out[out["level_name"] == "fine"]
    assert coarse["target_error_hard"].min() > 0.85
    assert fine["target_error_hard"].between(0.3, 0.7).all()
    assert (out["target_error_easy"] < 0.2).all()
    table = easy_hard_table(out)
    assert set(table["level_name"]) == {"coarse", "fine"} and (table["n"] == 5).all()


def test_no_arm_is_scored_on_its_own_mistakes():
    # Independent mistakes (nothing systematically hard): a seed's own errors would
    # give the target level a hard error of 1; the cross-fitted set gives its base rate.
    rng = np.random.default_rng(2)
    df = _rows(6, shared_hard=np.zeros(N_TEST, bool), rng=rng)
    target_rows, _ = est.BaselineGain(metric="target_error").target_level_rows(df)
    out, _ = derive_hard_examples(df, target_rows, mode="target_level")
    coarse = out[out["level_name"] == "coarse"]
    assert coarse["target_error_hard"].dropna().mean() < 0.4


def test_auto_keeps_the_datasets_own_hard_split():
    rng = np.random.default_rng(3)
    df = _rows(3, shared_hard=np.zeros(N_TEST, bool), rng=rng)
    df["target_error_hard"] = 0.5
    target_rows, _ = est.BaselineGain(metric="target_error").target_level_rows(df)
    out, note = derive_hard_examples(df, target_rows, mode="auto")
    assert (out["target_error_hard"] == 0.5).all() and "dataset's own" in note
    with pytest.raises(ValueError, match="'sometimes' is not one of auto"):
        derive_hard_examples(df, target_rows, mode="sometimes")


def test_a_single_seed_says_why_hard_examples_are_missing():
    df = _rows(1, shared_hard=np.zeros(N_TEST, bool), rng=np.random.default_rng(4))
    target_rows, _ = est.BaselineGain(metric="target_error").target_level_rows(df)
    out, note = derive_hard_examples(df, target_rows, mode="target_level")
    assert "fewer than 2 seeds" in note and "target_error_hard" not in out


def _family(
    seeds: int, hierarchy: str, level: tuple, wrong: np.ndarray, fractions: tuple, rng
) -> list[dict]:
    """Rows of one family that misses ``wrong`` (plus 5% noise) at every fraction."""
    rows = []
    lvl, name, k = level
    for seed in range(seeds):
        for f in fractions:
            correct = rng.random(N_TEST) > 0.05
            correct[wrong] = False
            rows.append(
                {
                    "hierarchy": hierarchy,
                    "level": lvl,
                    "level_name": name,
                    "num_classes": k,
                    "data_fraction": f,
                    "backbone": "cnn",
                    "seed": seed,
                    "target": "coarse",
                    "target_error": 1 - correct.mean(),
                    "test_correct": encode_correct(correct),
                }
            )
    return rows


def _families(seeds: int = 5, fractions: tuple = (0.25, 1.0)) -> pd.DataFrame:
    """Scratch misses the first 80 examples (the data's hard ones); the target-level arm misses
    those and 80 of its own (errors shared within its family); the fine arm only the hard ones."""
    rng = np.random.default_rng(7)
    common = np.arange(N_TEST) < 80
    own = (np.arange(N_TEST) >= 200) & (np.arange(N_TEST) < 280)
    return pd.DataFrame(
        _family(seeds, "scratch", (-1, "scratch", 4), common, fractions, rng)
        + _family(seeds, "manual", (0, "coarse", 4), common | own, fractions, rng)
        + _family(seeds, "manual", (1, "fine", 16), common, fractions, rng)
    )


def test_reference_family_defines_one_fixed_quantile_for_every_fraction():
    df = _families()
    out, note = derive_hard_examples(df, pd.DataFrame(), mode="auto")
    assert "scratch" in note and "80 of 400 test examples" in note and "every data fraction" in note
    np.testing.assert_allclose(out["hard_fraction"], 0.2)
    # The reference's hard set is the data's hard examples: every family misses them, so the
    # coarse and fine arms score alike there (no family is favoured by the definition) ...
    hard = out.groupby("level_name")["target_error_hard"].mean()
    assert hard["coarse"] > 0.95 and hard["fine"] > 0.95
    # ... while the old target-level definition hands the fine arm a gap from the coarse
    # family's own shared mistakes.
    target_rows = df[df["level_name"] == "coarse"]
    old, _ = derive_hard_examples(df, target_rows, mode="target_level")
    old_hard = old.groupby("level_name")["target_error_hard"].mean()
    assert old_hard["coarse"] - old_hard["fine"] > 0.3


def test_without_a_reference_family_hard_examples_are_not_available():
    df = _families()
    df = df[df["hierarchy"] != "scratch"]
    out, note = derive_hard_examples(df, df[df["level_name"] == "coarse"], mode="auto")
    assert "not available" in note and "target_error_hard" not in out
    with pytest.raises(ValueError, match="quantile must be in"):
        reference_hard_examples(_families(), quantile=1.5)


def test_the_report_gives_the_verdict_and_the_definition():
    shared_hard = np.zeros(N_TEST, bool)
    shared_hard[:80] = True
    df = _rows(5, shared_hard=shared_hard, rng=np.random.default_rng(5))
    scratch = df[df["level_name"] == "coarse"].assign(hierarchy="scratch", level=-1)
    a = analyze(pd.concat([df, scratch], ignore_index=True), n_boot=50)
    assert not a.hard.empty and (a.hard["gain"] > 0.3).all()
    text = render_markdown(a, "hard", {})
    assert "other seeds' `scratch` models" in text and "Every arm on easy and hard examples" in text
    assert "**supported**" in text
