"""Hard examples on real data: defined by the other seeds' target-level models, cross-fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import estimators as est
from analysis.hard_examples import decode_correct, derive_hard_examples, easy_hard_table
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


def test_the_report_gives_the_verdict_and_the_definition():
    shared_hard = np.zeros(N_TEST, bool)
    shared_hard[:80] = True
    df = _rows(5, shared_hard=shared_hard, rng=np.random.default_rng(5))
    a = analyze(df, n_boot=50)
    assert not a.hard.empty and (a.hard["gain"] > 0.3).all()
    text = render_markdown(a, "hard", {})
    assert "other seeds" in text and "Every arm on easy and hard examples" in text
    assert "**supported**" in text
