"""Verdict sentences: 'mixed' for effects of both signs, intervals quoted with their labels."""

from __future__ import annotations

import numpy as np

from analysis.fit import analyze
from analysis.verdicts import answers as answers_of
from analysis.verdicts import combine, signed_verdict, verdicts
from testing.simulate import simulate_sweep


def test_verdict_words():
    assert signed_verdict(2, 1, 5) == "mixed"
    assert signed_verdict(5, 0, 5) == "supported" and signed_verdict(1, 0, 5) == "partly supported"
    assert signed_verdict(0, 2, 5) == "contradicted" and signed_verdict(0, 0, 5) == "not supported"
    assert combine(["supported", "contradicted"]) == "mixed"
    assert combine(["supported", "not supported"]) == "partly supported"
    assert combine(["not supported", "not supported"]) == "not supported"


def _opposite(k, f, kind):
    shift = {10: 0.03, 100: -0.03} if kind == "random" else {}
    return 0.2 + np.array([shift.get(int(c), 0.0) for c in k])


def test_opposite_kind_effects_read_mixed_with_their_labelled_intervals():
    df = simulate_sweep(
        curve=_opposite, kinds={"manual": 0.0, "random": 0.0}, seeds=8, noise=0.008, random_state=3
    )
    rows = dict(verdicts(analyze(df, n_boot=50)))
    text = rows["manual beats random at matched class counts finer than the target"]
    assert text.startswith("**mixed**")
    assert "Holm-consistent 95%" in text and "interaction" in text


def test_the_alignment_answer_says_the_direction_of_what_it_found():
    kw = {
        "curve": lambda k, f, kind: 0.2 + 0.0 * np.asarray(k, float),
        "num_classes": (2, 10, 50),
        "kinds": {"manual": 0.0, "random": 0.0, "perturbed": 0.0, "cluster_global": 0.0},
        "alignment": {"manual": 1.0, "random": 0.1, "perturbed": 0.5, "cluster_global": 0.8},
        "seeds": 6,
        "scratch_error": None,
    }
    for effect, word in ((0.05, "rises"), (-0.05, "falls")):
        a = analyze(simulate_sweep(align_effect=effect, random_state=8, **kw), n_boot=20)
        answer = dict(answers_of(a))["How much alignment is needed?"]
        assert answer.startswith(f"Gain over the target level {word} with alignment"), answer
