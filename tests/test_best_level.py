"""Best-level racing (racing.py): drops against planted truths, the guarantee by simulation,
and the spec's refusals (exit 2, one line, nothing created)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sweeps_fake import write_fake_spec

from contracts import Cell
from racing import evaluate, false_claim, race_groups, run_race, simulate, verdict
from sequential import Design
from sweeps import commands

SEEDS = list(range(8))


def _design(**kw) -> Design:
    return Design(**{"initial": 3, "step": 2, "max": 8, "stop_when": ("best_level",), **kw})


def _values(means, noise=0.001, seed=0, shared=0.05):
    """Level i on seed s: means[i] + a seed effect all levels share + a little own noise."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0, shared, len(SEEDS))
    return {(i, s): m + u[s] + rng.normal(0, noise) for i, m in enumerate(means) for s in SEEDS}


def _race(means, values=None, **kw):
    return run_race(
        _design(**kw), ("k", 1.0, "b"), list(range(len(means))), values or _values(means), SEEDS
    )


def test_clearly_worse_levels_leave_and_the_best_wins():
    race, todo = _race([0.30, 0.20, 0.10, 0.20, 0.40])
    assert not todo and race.status == "decided" and race.winner == 2
    statuses = {ln.level: ln.status for ln in race.lanes}
    assert statuses == {0: "worse", 1: "worse", 2: "winner", 3: "worse", 4: "worse"}
    assert all(ln.against == 2 for ln in race.lanes if ln.status == "worse")
    # Dropped levels ran fewer seeds than the winner, who ran to the race's end.
    assert race.lane(2).seeds == max(ln.seeds for ln in race.lanes)
    assert sum(ln.seeds for ln in race.lanes) < 5 * 8


def test_a_tie_is_never_declared_a_winner():
    values = _values([0.1, 0.1, 0.5])
    for s in SEEDS:  # levels 0 and 1 identical on every seed: the paired difference is 0
        values[(1, s)] = values[(0, s)]
    race, _ = _race([0.1, 0.1, 0.5], values)
    assert race.status == "max" and race.lane(2).status == "worse"
    assert {ln.level for ln in race.racing} == {0, 1}
    assert "not decided within max" in verdict(race, values, SEEDS)
    # With a margin the tie is settled as such, never as one level beating the other.
    race, _ = _race([0.1, 0.1, 0.5], values, margin=0.01)
    assert race.status == "decided" and sorted(race.within_margin()) == [0, 1]


def test_new_seeds_go_to_every_level_still_racing_and_only_to_them():
    means = [0.10, 0.11, 0.60]
    values = _values(means, noise=0.02)
    first = {k: v for k, v in values.items() if k[1] < 3}  # round 1 done
    race, todo = _race(means, first)
    assert race.status == "open" and race.lane(2).status == "worse"
    assert sorted(todo) == [(lv, s) for lv in (0, 1) for s in (3, 4)]
    # The decision is a function of the values: the same values decide the same way again.
    again, todo_again = _race(means, first)
    assert todo_again == todo and [ln.status for ln in again.lanes] == [
        ln.status for ln in race.lanes
    ]


def test_the_anchor_is_replaced_only_by_a_level_decided_better():
    # Look 1: level 0 has the lowest mean and absorbs level 1 (within margin): the anchor.
    # Level 2 looks no better on seeds 0-2, then is far better: decided better, it takes over.
    seeds = list(range(16))
    u = np.random.default_rng(0).normal(0, 0.05, 16)
    values = {(0, s): 0.30 + u[s] for s in seeds}
    values |= {(1, s): 0.3005 + u[s] + 0.0001 * (s % 3) for s in seeds}
    values |= {(2, s): 0.31 + u[s] - 0.5 * (s >= 3) + 0.001 * (s % 2) for s in seeds}
    race, todo = run_race(_design(max=16, margin=0.05), ("k", 1.0, "b"), [0, 1, 2], values, seeds)
    assert not todo and race.status == "decided" and race.winner == 2
    assert race.lane(1).status == "within margin" and race.lane(1).against == 0
    assert race.lane(0).status == "worse" and race.lane(0).against == 2
    assert race.lane(1).look == 0 < race.lane(0).look
    # Level 1 was within margin of 0, not of 2: the answer claims only the margin.
    assert race.by_margin and not race.within_margin()
    assert "pretrain on level 2: no level is better by more than the margin" in verdict(
        race, values, seeds
    )


def test_false_claim_reads_the_planted_truth():
    race, _ = _race([0.30, 0.20, 0.10])
    assert not false_claim(race, [0.30, 0.20, 0.10], 0.0)
    assert false_claim(race, [0.30, 0.05, 0.10], 0.0)  # truly, level 1 was better
    # "pretrain on 2" says 2 beats every level: wrong even when 1 is within the margin.
    assert false_claim(race, [0.30, 0.05, 0.10], 0.06)
    assert not false_claim(race, [0.30, 0.15, 0.10], 0.06)
    assert false_claim(race, [0.30, 0.20, 0.20], 0.1)  # a tie called a single winner


# Planted curves in units of the per-seed noise sd: an asymmetric V, a flat null, near-ties.
SHAPES = {
    "asymmetric V": [2.0, 1.0, 0.0, 0.5, 1.5],
    "flat null": [0.0, 0.0, 0.0, 0.0, 0.0],
    "near-ties": [1.5, 0.1, 0.0, 1.0, 2.0],
}


@pytest.mark.parametrize("margin", [0.0, 0.3])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_simulated_false_claims_stay_below_alpha(shape, margin):
    # A large alpha gives the check power; the tolerance is 3 binomial sds of the estimate.
    alpha, n_sim = 0.3, 200
    design = _design(alpha=alpha, margin=margin, max=10, spending="pocock")
    out = simulate(design, SHAPES[shape], sd=0.4, n_sim=n_sim, random_state=1)
    assert out["false_claims"] <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / n_sim)
    assert out["mean_trials"] <= out["fixed_trials"]


def test_evaluate_merges_the_races_into_the_state():
    rows = []
    means = {"a": 0.3, "b": 0.1, "c": 0.5}
    values = _values(list(means.values()))
    for i, level in enumerate(means):
        for s in SEEDS[:3]:
            rows.append(
                {
                    "hierarchy": "manual",
                    "level_name": level,
                    "data_fraction": 1.0,
                    "backbone": "b",
                    "num_classes": 4 * (i + 1),
                    "label_fn": level,
                    "seed": s,
                    "value": values[(i, s)],
                }
            )
    rows += [{**r, "seed": s, "value": None} for r in rows[::3] for s in SEEDS[3:]]
    rows.append({**rows[0], "hierarchy": "scratch", "level_name": None, "num_classes": 4})
    assert list(race_groups(rows)) == [("manual", 1.0, "b")]  # scratch does not race
    state = evaluate(_design(), rows, SEEDS)
    assert len(state.races) == 1
    lanes = {o.cells[0].level_name: o for o in state.outcomes if o.rule == "best_level"}
    assert lanes["c"].status == "decided" and "worse than b" in lanes["c"].verdict
    # The next look's seeds go to the levels still racing, and the scratch cell gets none.
    racing = {c.level_name for c, _ in state.todo}
    assert "c" not in racing and racing and Cell("scratch", "scratch", 1.0, "b") not in racing


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"replicates": {"initial": 3, "stop_when": ["best_level"], "margin": -0.1}}, "margin"),
        (
            {
                "replicates": {"initial": 3, "stop_when": ["best_level"]},
                "factors": {"hierarchies": ["manual", "scratch"], "levels": ["leaf"]},
            },
            "one level",
        ),
        ({"replicates": {"initial": 8, "stop_when": ["best_level"]}}, "fixed seeds only"),
    ],
)
def test_bad_races_exit_2_with_one_line_and_create_nothing(tmp_path, capsys, fields, expected):
    path = write_fake_spec(
        tmp_path, "race", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", seeds=8, **fields
    )
    assert commands.main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.yaml"]


def _table(means: dict[str, float], seeds_run: dict[str, int]):
    """A trial table (analysis' columns): each level ran its first `seeds_run` seeds."""
    import pandas as pd

    values = _values(list(means.values()))
    rows = [
        {
            "hierarchy": "manual",
            "level_name": level,
            "data_fraction": 1.0,
            "backbone": "b",
            "num_classes": 4 * (i + 1),
            "label_fn": level,
            "seed": s,
            "target_error": values[(i, s)],
            "round": str(1 + (s >= 3) + (s >= 5) + (s >= 7)),
        }
        for i, level in enumerate(means)
        for s in SEEDS[: seeds_run[level]]
    ]
    return pd.DataFrame(rows)


def test_the_report_and_the_summary_line_tell_each_race():
    from analysis.adaptive import adaptive_state, race_table
    from sweeps.rounds import Rounds

    df = _table({"a": 0.3, "b": 0.1, "c": 0.5}, {"a": 3, "b": 3, "c": 3})
    design = _design()
    state = adaptive_state(df, design)
    table = race_table(state, df, design)
    row = table.iloc[0]
    assert row["group"] == "manual f1/b" and row["winner"] == "b"
    assert "a (round 1, worse than b)" in row["dropped (after round)"]
    assert row["answer"].startswith("pretrain on level b (P(best) 1.00)")
    assert row["seeds run"] == "a 3, b 3, c 3"  # decided at the first look
    line = Rounds([], state, trials_used=9, trials_fixed=24).text()
    assert "1 of 1 groups decided (1 with one winner" in line
    assert "9 trials used of the fixed design's 24 (15 saved, 62%)" in line
