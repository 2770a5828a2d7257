"""Seeded small run of bench/bench_calibration.py: the real analysis passes, a broken one fails."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_calibration as cal  # noqa: E402

from analysis import stats, ucurve  # noqa: E402

SMALL = tuple(
    s
    for s in cal.SCENARIOS
    if s.name
    in (
        "asymmetric V (claim true)",
        "glyph V (best = target)",
        "null, catastrophic finest",
        "kinds: opposite signs by level",
    )
)
OPTIMUM = "optimum interval contains the best level"


def test_small_calibration_meets_loose_bounds():
    tally = cal.calibrate(SMALL, reps=12, random_state=1)
    coverage, fpr, argmin = cal.summary(tally)
    assert coverage >= 0.85, cal.table(tally)
    assert fpr <= 0.2, cal.table(tally)
    assert argmin >= 0.85, cal.table(tally)
    power = tally.verdicts[("paper's claim supported", "effect")]
    assert power[0] / power[1] >= 0.6, cal.table(tally)


def _five_point_fit(Y, grid, alpha, n_boot, rng):
    """The old estimator: the vertex of a least-squares quadratic over all levels, percentile CI."""
    fit = REAL_FIT(Y, grid, alpha, n_boot, rng)
    x = grid["x"].to_numpy(dtype=float)

    def vertex(means: np.ndarray) -> np.ndarray:
        coef = np.polyfit(x, np.atleast_2d(means).T, 2)
        return np.clip(-coef[1] / (2 * coef[0]), x.min(), x.max())

    boot = stats.bootstrap_means(Y, stats.bootstrap_indices(Y.shape[0], n_boot, rng))
    low, high = stats.percentile_ci(vertex(boot), alpha, n=Y.shape[0])
    fit.row.update(
        optimum=float(np.exp(vertex(stats.nanmean(Y, 0))[0])),
        optimum_ci_low=float(np.exp(low)),
        optimum_ci_high=float(np.exp(high)),
    )
    return fit


REAL_FIT = ucurve.fit_optimum


def test_calibration_catches_the_old_five_point_parabola(monkeypatch):
    glyph = tuple(s for s in cal.SCENARIOS if s.name == "glyph V (best = target)")
    real = cal.calibrate(glyph, reps=10, random_state=2)
    hits, n = real.coverage[OPTIMUM]
    assert hits / n >= 0.9
    monkeypatch.setattr(ucurve, "fit_optimum", _five_point_fit)
    broken = cal.calibrate(glyph, reps=10, random_state=2)
    hits, n = broken.coverage[OPTIMUM]
    assert hits / n <= 0.5, cal.table(broken)


def test_the_bench_prints_the_summary_line_last(capsys):
    with pytest.raises(SystemExit):
        cal.main(["--reps", "0"])
    assert cal.main(["--reps", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("calibration: min coverage ")
    assert "max false-positive rate" in last and "argmin coverage" in last
