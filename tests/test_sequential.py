"""The sequential statistics of adaptive replicates (sequential.py): spending, looks, coverage, the walk."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sequential import SPENDING, Design, comparisons, coverage, evaluate, spent_alpha


@pytest.mark.parametrize("spending", SPENDING)
def test_spending_spends_alpha_exactly_and_monotonically(spending):
    d = Design(initial=3, max=16, step=2, spending=spending)
    alphas = d.look_alphas()
    assert d.looks() == [3, 5, 7, 9, 11, 13, 15, 16]
    assert all(a > 0 for a in alphas)
    assert math.isclose(sum(alphas), 0.05, rel_tol=1e-9)
    assert spent_alpha(1.0, 0.05, spending) == pytest.approx(0.05)
    assert [d.round_of(i) for i in (0, 2, 3, 4, 5, 15)] == [0, 0, 1, 1, 2, 7]


def test_a_bad_design_names_the_value():
    with pytest.raises(ValueError, match="spending='x'"):
        Design(initial=3, max=8, spending="x")
    with pytest.raises(ValueError, match="initial=9"):
        Design(initial=9, max=8)


@pytest.mark.parametrize("spending", SPENDING)
def test_sequential_intervals_keep_coverage_under_peeking_naive_ones_do_not(spending):
    d = Design(initial=3, max=16, step=1, spending=spending)
    seq = coverage(d, effect=0.0, n_sim=3000, random_state=1)
    naive = coverage(d, effect=0.0, n_sim=3000, random_state=1, naive=True)
    assert seq["coverage"] >= 0.95 - 0.01
    assert naive["coverage"] < 0.88  # ~0.78: peeking at 14 looks
    # With a real effect the sequential design stops early most of the time.
    strong = coverage(d, effect=2.0, n_sim=2000, random_state=2)
    assert strong["stopped_significant"] > 0.95 and strong["mean_seeds"] < 12


def _rows(values):
    """A table: scratch, manual/random at two levels (label functions distinct), seeds 0..n-1."""
    rows = []
    for (h, level, k), errs in values.items():
        for s, v in enumerate(errs):
            rows.append(
                {
                    "hierarchy": h,
                    "level_name": level,
                    "data_fraction": 1.0,
                    "backbone": "b",
                    "num_classes": k,
                    "label_fn": f"{h}{level}",
                    "seed": s,
                    "value": v,
                }
            )
    return rows


def test_the_walk_stops_settled_comparisons_and_asks_only_for_open_cells():
    rng = np.random.default_rng(0)
    n = 8
    table = {
        ("scratch", "scratch", 2): 0.5 + rng.normal(0, 0.01, n),
        ("manual", "coarse", 2): 0.2 + rng.normal(0, 0.01, n),
        ("manual", "fine", 8): 0.2 + rng.normal(0, 0.01, n),
        ("random", "coarse", 2): 0.2 + rng.normal(0, 0.01, n),
        ("random", "fine", 8): 0.2 + rng.normal(0, 0.01, n),
    }
    d = Design(initial=3, max=n, step=2, stop_when=("gain", "hierarchy"))
    # Only the first look's seeds have run: the first look asks for nothing more.
    first = {k: [*v[:3], *[None] * (n - 3)] for k, v in table.items()}
    state = evaluate(d, _rows(first), list(range(n)), target="coarse")
    gains = [o for o in state.outcomes if o.rule == "gain"]
    kinds = [o for o in state.outcomes if o.rule == "hierarchy"]
    scratch_gains = [o for o in gains if "over scratch" in o.name]
    assert scratch_gains and all(o.status == "decided" and o.n == 3 for o in scratch_gains)
    assert [o.status for o in kinds] == ["open"]
    # The next look needs seeds 3, 4 of the manual and random cells only (not scratch).
    assert state.look == 1
    assert sorted({c[0] for c, _ in state.todo}) == ["manual", "random"]
    assert sorted({s for _, s in state.todo}) == [3, 4]
    # All seeds run: the kind comparison ends unsettled at max; nothing is left to do.
    state = evaluate(d, _rows(table), list(range(n)), target="coarse")
    assert state.done and [o.status for o in state.outcomes if o.rule == "hierarchy"] == ["max"]
    assert "not settled within max" in state.outcomes[-1].reason


def test_a_failed_trial_counts_as_done_and_is_left_out():
    n = 4
    table = {
        ("scratch", "scratch", 2): [0.5, 0.51, math.nan, 0.52],
        ("manual", "coarse", 2): [0.2, 0.21, 0.2, 0.22],
    }
    d = Design(initial=4, max=n, stop_when=("gain",))
    state = evaluate(d, _rows(table), list(range(n)), target="coarse")
    assert state.done and state.outcomes[0].n == 3


def test_half_width_rule():
    rng = np.random.default_rng(3)
    table = {("manual", "coarse", 2): 0.2 + rng.normal(0, 0.001, 6)}
    d = Design(initial=3, max=6, stop_when=("half_width",), half_width=0.05)
    state = evaluate(d, _rows(table), list(range(6)))
    (o,) = state.outcomes
    assert o.status == "decided" and o.n == 3 and o.interval.half_width <= 0.05


def test_kind_pools_and_shapes_use_only_levels_at_or_finer_than_the_target():
    """Below the target, manual is the target's own labels: no kind pool or shape reads it."""
    rows = _rows(
        {
            ("scratch", "scratch", 8): [0.5] * 3,
            **{
                (kind, name, k): [0.2] * 3
                for kind in ("manual", "random")
                for name, k in (("coarse", 2), ("target", 8), ("fine", 32), ("finest", 128))
            },
        }
    )
    found = comparisons(rows, "target", ("hierarchy", "u_test"))
    (kinds,) = [c for c in found if c.rule == "hierarchy"]
    assert "2 class counts" in kinds.name  # 32 and 128: finer than the target (8)
    assert {cell[1] for cell in kinds.cells} == {"fine", "finest"}
    shape = next(c for c in found if c.name.startswith("shape of manual"))
    assert [cell[1] for cell in shape.cells] == ["target", "fine", "finest"]
    assert [claim for claim, _ in shape.claims][1] == "fine beats both target and finest"
