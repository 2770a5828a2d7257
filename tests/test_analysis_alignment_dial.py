"""Alignment dialled at fixed granularity (analysis/alignment_dial.py, E3) against planted truths."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.alignment_dial import AlignmentDial, dial_rows, has_dial
from analysis.fit import analyze
from analysis.render import render_markdown

P = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
# Per level (classes): the planted slope of gain on AMI and the AMI where the gain is 0.
TRUTH = {4: (0.10, 0.8), 16: (0.04, 0.5)}


def _dial(seeds: int = 6, random_state: int = 0, truth: dict | None = None) -> pd.DataFrame:
    """A manual target level (4 classes) and a finer one (16), and perturbed arms at both
    levels for every p; each seed draws its own perturbation, so its own realised AMI, and the
    gain over the target level is ``slope * (AMI - threshold)`` plus noise."""
    truth = TRUTH if truth is None else truth
    rng = np.random.default_rng(random_state)
    rows = []

    def row(hierarchy: str, kind: str, p: float | None, level: int, k: int, seed: int, **v):
        name = "target" if k == 4 else "fine"
        rows.append(
            {
                "hierarchy": hierarchy,
                "hierarchy_kind": kind,
                "level": level,
                "level_name": name,
                "num_classes": float(k),
                "seed": seed,
                "hierarchy_p": None if p is None else f"{p:g}",
                **v,
            }
        )

    for s in range(seeds):
        target_err = 0.3 + rng.normal(0, 0.02)
        row("manual", "manual", None, 0, 4, s, target_error=target_err, **{"align/ami": 1.0})
        row(
            "manual", "manual", None, 1, 16, s, target_error=target_err - 0.01, **{"align/ami": 0.8}
        )
        for level, k in enumerate((4, 16)):
            slope, threshold = truth[k]
            for p in P:
                ami = float(np.clip((1 - p) * (1.0 if k == 4 else 0.8) + rng.normal(0, 0.04), 0, 1))
                gain = slope * (ami - threshold) + rng.normal(0, 0.004)
                row(
                    f"perturbed_p{p:g}",
                    "perturbed",
                    p,
                    level,
                    k,
                    s,
                    target_error=target_err - gain,
                    **{"align/ami": ami, "align/cond_entropy": 1.5 * (1 - ami)},
                )
    df = pd.DataFrame(rows)
    return df.assign(data_fraction=1.0, backbone="b", target="target", dataset="d")


def test_dial_rows_parse_the_family_and_p():
    rows = dial_rows(_dial(seeds=2))
    assert set(rows["family"]) == {"perturbed"} and sorted(rows["p"].unique()) == list(P)
    assert has_dial(_dial(seeds=2)) and not has_dial(
        _dial(seeds=2).query("hierarchy_p in [None, '0', '1']")
    )


def test_slopes_thresholds_and_their_difference_recover_the_plant():
    d = AlignmentDial().fit(_dial())
    cells = d.cells_
    assert len(cells) == 2 * len(P) and (cells["n"] == 6).all()
    for k, g in cells.groupby("num_classes"):
        assert g.sort_values("p")["ami"].is_monotonic_decreasing, k
        slope, threshold = TRUTH[int(k)]
        truth = slope * (g["ami"] - threshold)  # at the cell's mean AMI
        assert ((g["ci_low"] <= truth + 0.003) & (truth - 0.003 <= g["ci_high"])).mean() >= 0.9
    (pair,) = d.interaction_.itertuples(index=False)
    assert (pair.classes_a, pair.classes_b) == (4.0, 16.0) and pair.n == 6
    assert d.dose_["crossing"].str.startswith("at AMI ").all()


def test_slopes_thresholds_and_their_difference_cover_the_plant_across_draws():
    """20 independent sweeps: each interval should cover its planted value about 95% of the
    time (>= 85% here: 40 intervals of a kind), and every slope is detected."""
    covered: dict[str, list[bool]] = {"slope": [], "threshold": [], "difference": []}
    for r in range(20):
        d = AlignmentDial().fit(_dial(random_state=100 + r))
        dose = d.dose_.set_index("num_classes")
        for k, (slope, threshold) in TRUTH.items():
            x = dose.loc[float(k)]
            assert x.p_adj < 0.05
            covered["slope"].append(x.ci_low <= slope <= x.ci_high)
            covered["threshold"].append(x.threshold_ci_low <= threshold <= x.threshold_ci_high)
        (pair,) = d.interaction_.itertuples(index=False)
        assert pair.p_adj < 0.05
        covered["difference"].append(pair.ci_low <= -0.06 <= pair.ci_high)
    rates = {name: float(np.mean(v)) for name, v in covered.items()}
    assert min(rates.values()) >= 0.85, rates


def test_equal_slopes_show_no_interaction_and_a_far_crossing_is_outside_the_range():
    same = {4: (0.05, -0.5), 16: (0.05, -0.5)}  # the gain never reaches 0 over AMI 0..1
    misses = 0
    for r in range(8):
        d = AlignmentDial().fit(_dial(random_state=10 + r, truth=same))
        misses += int(d.interaction_["p_adj"].iloc[0] < 0.05)
        assert d.dose_["crossing"].str.startswith("outside the observed range (AMI").all()
    assert misses <= 2


def test_no_dial_no_section_and_a_dial_renders_its_tables():
    a = analyze(_dial(), n_boot=100)
    text = render_markdown(a, "dial", {})
    section = text.split("## Alignment dialled at fixed granularity (perturbed arms)")[1]
    for header in (
        "| level_name | num_classes | p | n | ami | cond_entropy | gain | ci_low | ci_high |",
        "| level_name | num_classes | n | n_p | slope | ci_low | ci_high | ci_label | pvalue |",
        "| level_a | classes_a | level_b | classes_b | n | slope_a | slope_b | difference |",
    ):
        assert header in section, header
    assert "crosses 0" in section
    plain = _dial().query("hierarchy == 'manual' or hierarchy_p in ['0', '1']")
    assert "Alignment dialled" not in render_markdown(analyze(plain, n_boot=50), "two p", {})
