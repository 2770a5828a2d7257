"""Calibration against planted truth: the real analysis code on simulated sweeps with known effects.

    python bench/bench_calibration.py               # 300 sweeps per scenario (~7.5 CPU-minutes)
    python bench/bench_calibration.py --reps 50     # a quick look

Each scenario plants mean errors per (kind, data fraction, level) on a glyph-like
5-level grid (5, 40, 110, 320, 2,880 classes; the target is 40) and draws seeds
around them: a seed effect shared by every arm of the seed, a seed x fraction
effect, and cell noise whose SD grows with the error (0.008 + 0.04 x error:
about 0.012 at 10% error, 0.03 at 60%, like test-set binomial noise plus run to
run variation). The REAL estimators (analysis.claim.PaperClaim, analysis.estimators.
UCurve / HierarchyComparison / SizeGranularity) are fitted on every sweep and
scored against the planted truth:

- every reported interval: how often it contains the true value (marginal
  coverage; the adjusted intervals are at least as wide as the 95% ones);
- every verdict: how often it fires where its claim is false (false-positive
  rate) and where it is true (power);
- the best-level set: how often it contains the true best level (the argmin
  coverage), and how often the optimum's interval contains it.

The last line is ``calibration: min coverage C, max false-positive rate F,
argmin coverage A``. Targets at 95% / alpha 0.05: C >= 0.93, F <= 0.07, A >= 0.93.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.claim import ROLES, PaperClaim
from analysis.estimators import HierarchyComparison, SizeGranularity, UCurve

CLASSES = (5.0, 40.0, 110.0, 320.0, 2880.0)
TARGET = 1  # index of the target level (40 classes)
ALPHA = 0.05
LEVEL_NAMES = ("coarse", "radical", "fine1", "fine2", "character")


@dataclass(frozen=True)
class Scenario:
    """Planted mean errors: ``means[kind][fraction]`` is one error per level of ``CLASSES``."""

    name: str
    means: Mapping[str, Mapping[float, tuple[float, ...]]]
    seeds: int = 8
    shared_finest: bool = True  # every kind's finest level is one label function (as on glyphs)


def _v(*errors: float) -> tuple[float, ...]:
    return tuple(errors)


V_CLAIM = _v(0.37, 0.100, 0.070, 0.105, 0.60)  # a finer level beats the target, finest worse
GLYPH = _v(0.37, 0.055, 0.103, 0.184, 0.765)  # the glyph shape: best at the target
NULL_CATASTROPHE = _v(0.37, 0.100, 0.100, 0.100, 0.60)  # no finer level helps; finest breaks
FLAT = _v(0.10, 0.10, 0.10, 0.10, 0.10)


def _crossing(fraction: float) -> tuple[float, ...]:
    """The 110-class level crosses the target at fraction 0.5 (gain = 0.03 log2(f / 0.5))."""
    fine = 0.10 - 0.03 * math.log2(fraction / 0.5)
    return _v(0.37, 0.100, fine, 0.115, 0.60)


SCENARIOS = (
    Scenario("asymmetric V (claim true)", {"manual": {1.0: V_CLAIM}}),
    Scenario("glyph V (best = target)", {"manual": {1.0: GLYPH}}),
    Scenario("null, catastrophic finest", {"manual": {1.0: NULL_CATASTROPHE}}),
    Scenario("flat null", {"manual": {1.0: FLAT}}),
    Scenario(
        "kinds: opposite signs by level",
        {"manual": {1.0: V_CLAIM}, "random": {1.0: _v(0.30, 0.2, 0.100, 0.075, 0.60)}},
    ),
    Scenario("kinds: null", {"manual": {1.0: V_CLAIM}, "random": {1.0: V_CLAIM}}),
    Scenario("size: crossover", {"manual": {f: _crossing(f) for f in (0.25, 0.5, 1.0)}}),
    Scenario("size: null", {"manual": {f: V_CLAIM for f in (0.25, 0.5, 1.0)}}),
)


# ---------------------------------------------------------------- simulation
def simulate(sc: Scenario, rng: np.random.Generator) -> pd.DataFrame:
    """One sweep's trial table, as analysis.load returns it (the columns the estimators read)."""
    fractions = sorted({f for per_kind in sc.means.values() for f in per_kind})
    seed_effect = rng.normal(0.0, 0.02, sc.seeds)
    seed_fraction = rng.normal(0.0, 0.01, (sc.seeds, len(fractions)))
    rows = []
    last = len(CLASSES) - 1
    for kind, per_fraction in sc.means.items():
        for fi, f in enumerate(fractions):
            mu = np.asarray(per_fraction[f])
            for s in range(sc.seeds):
                err = mu + seed_effect[s] + seed_fraction[s, fi]
                err = err + rng.normal(0.0, 1.0, mu.size) * (0.008 + 0.04 * mu)
                for lvl, (k, e) in enumerate(zip(CLASSES, err, strict=True)):
                    shared = lvl == last and sc.shared_finest
                    rows.append(
                        {
                            "hierarchy": kind,
                            "level": lvl,
                            "level_name": LEVEL_NAMES[lvl],
                            "num_classes": k,
                            "data_fraction": f,
                            "num_train": 20_000 * f,
                            "seed": s,
                            "label_fn": "finest" if shared else f"{kind}:{lvl}",
                            "target_error": float(e),
                        }
                    )
    df = pd.DataFrame(rows)
    df["target"], df["backbone"] = LEVEL_NAMES[TARGET], "net"
    return df


# ---------------------------------------------------------------- truth
def _mu(sc: Scenario, kind: str, f: float) -> np.ndarray:
    return np.asarray(sc.means[kind][f], dtype=float)


def claim_truth(sc: Scenario, kind: str, f: float, role: str, k: float) -> float:
    """True value of a PaperClaim contrast (reference error - level error)."""
    mu, target = _mu(sc, kind, f), _mu(sc, "manual", f)[TARGET]
    j = CLASSES.index(k)
    reference = mu[-1] if role == ROLES[1] else target
    return float(reference - mu[j])


def claim_holds(sc: Scenario, kind: str, f: float) -> tuple[bool, bool]:
    """(some finer level beats the target, and the finest level is worse than such a level)."""
    mu, target = _mu(sc, kind, f), _mu(sc, "manual", f)[TARGET]
    better = [j for j in range(TARGET + 1, len(CLASSES)) if mu[j] < target - 1e-12]
    return bool(better), any(mu[-1] > mu[j] + 1e-12 for j in better if j != len(CLASSES) - 1)


def best_level(sc: Scenario, kind: str, f: float) -> float | None:
    """Class count of the unique best level at or finer than the target (None: a tie)."""
    mu = _mu(sc, kind, f)[TARGET:]
    order = np.argsort(mu)
    if mu[order[1]] - mu[order[0]] < 1e-12:
        return None
    return CLASSES[TARGET + int(order[0])]


def u_holds(sc: Scenario, kind: str, f: float) -> bool:
    """A U over the levels at or finer than the target: the unique minimum is interior."""
    best = best_level(sc, kind, f)
    return best is not None and best not in (CLASSES[TARGET], CLASSES[-1])


def kind_cells_truth(sc: Scenario, f: float) -> dict[float, float]:
    """True advantage error(random) - error(manual) per matched count with different labels."""
    a, b = _mu(sc, "manual", f), _mu(sc, "random", f)
    last = len(CLASSES) - 1
    return {
        k: float(b[j] - a[j]) for j, k in enumerate(CLASSES) if j != last or not sc.shared_finest
    }


def slope_truth(sc: Scenario, kind: str, level: int) -> float:
    """OLS slope over log fraction of the true gain over the target level."""
    fractions = sorted(sc.means[kind])
    lf = np.log(fractions)
    gain = np.array([_mu(sc, "manual", f)[TARGET] - _mu(sc, kind, f)[level] for f in fractions])
    lc = lf - lf.mean()
    return float((lc * gain).sum() / (lc * lc).sum())


# ---------------------------------------------------------------- scoring
@dataclass
class Tally:
    """Hits over trials per interval, and verdict calls under null and effect."""

    coverage: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    verdicts: dict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )

    def cover(self, name: str, low: float, high: float, truth: float) -> None:
        """Count one interval (a NaN bound counts as a miss: an interval that was not given)."""
        cell = self.coverage[name]
        cell[0] += bool(low - 1e-12 <= truth <= high + 1e-12)
        cell[1] += 1

    def call(self, name: str, truth: bool, fired: bool) -> None:
        cell = self.verdicts[(name, "effect" if truth else "null")]
        cell[0] += bool(fired)
        cell[1] += 1


def score_claim(sc: Scenario, df: pd.DataFrame, tally: Tally) -> None:
    """PaperClaim's intervals and verdicts, and UCurve's best set, optimum interval and U test."""
    claim = PaperClaim(alpha=ALPHA).fit(df)
    labels = {
        ROLES[0]: "finer vs target",
        ROLES[1]: "finer vs finest",
        ROLES[2]: "coarser vs target",
    }
    for r in claim.contrasts_.itertuples(index=False):
        truth = claim_truth(sc, r.hierarchy, r.data_fraction, r.role, r.num_classes)
        tally.cover(f"claim: {labels[r.role]} (Holm-consistent)", r.ci_low, r.ci_high, truth)
    for r in claim.results_.itertuples(index=False):
        beats, finest_worse = claim_holds(sc, r.hierarchy, r.data_fraction)
        tally.call("a finer level beats the target", beats, r.finer_beats_target)
        tally.call("paper's claim supported", beats and finest_worse, r.verdict == "supported")
    coarse = claim.contrasts_[claim.contrasts_["role"] == ROLES[2]]
    for r in coarse.itertuples(index=False):
        truth = claim_truth(sc, r.hierarchy, r.data_fraction, r.role, r.num_classes)
        tally.call("coarser level differs from the target", abs(truth) > 1e-12, r.significant)
    u = UCurve(n_boot=200, alpha=ALPHA, random_state=0).fit(df)
    for r in u.results_.itertuples(index=False):
        best = best_level(sc, r.hierarchy, r.data_fraction)
        tally.call(
            "U over levels >= target (two-lines)", u_holds(sc, r.hierarchy, r.data_fraction), r.is_u
        )
        if best is None:
            continue
        in_set = best in [float(v) for v in r.best_set.split("; ")]
        tally.cover("best-level set contains the best level", float(in_set), float(in_set), 1.0)
        tally.cover(
            "optimum interval contains the best level", r.optimum_ci_low, r.optimum_ci_high, best
        )


def score_kinds(sc: Scenario, df: pd.DataFrame, tally: Tally) -> None:
    """HierarchyComparison: per-count and pooled intervals; mixed, pooled, interaction verdicts."""
    c = HierarchyComparison(pairs=[("manual", "random")], alpha=ALPHA).fit(df)
    for f in sorted(df["data_fraction"].unique()):
        truth = kind_cells_truth(sc, f)
        cells = c.cells_[c.cells_["data_fraction"] == f]
        for r in cells.itertuples(index=False):
            tally.cover(
                "kinds: per matched count (Holm-consistent)",
                r.ci_low,
                r.ci_high,
                truth[r.num_classes],
            )
        finer = [v for k, v in truth.items() if k > CLASSES[TARGET]]
        pooled_truth = float(np.mean(finer))
        for r in c.pooled_[c.pooled_["data_fraction"] == f].itertuples(index=False):
            tally.cover("kinds: pooled over finer counts", r.ci_low, r.ci_high, pooled_truth)
            tally.call(
                "kinds differ (pooled, finer counts)", abs(pooled_truth) > 1e-12, r.p_adj < ALPHA
            )
        sig = cells[cells["p_adj"] < ALPHA]
        signs = {np.sign(v) for v in truth.values() if abs(v) > 1e-12}
        tally.call("kinds differ at some count", bool(signs), len(sig) > 0)
        mixed = (sig["advantage"] > 0).any() and (sig["advantage"] < 0).any()
        tally.call("kinds: mixed (significant both signs)", len(signs) == 2, mixed)
        inter = c.interaction_[c.interaction_["data_fraction"] == f]
        varies = np.ptp(list(truth.values())) > 1e-12
        tally.call("kind x level interaction", varies, bool((inter["pvalue"] < ALPHA).any()))


def score_size(sc: Scenario, df: pd.DataFrame, tally: Tally) -> None:
    """SizeGranularity's per-level slopes of the gain over the target on log size."""
    s = SizeGranularity(n_boot=50, alpha=ALPHA, random_state=0).fit(df)
    any_null = any_fired = False
    for r in s.slopes_.itertuples(index=False):
        truth = slope_truth(sc, r.hierarchy, int(r.level))
        tally.cover("size: gain-vs-log-size slope (Holm-consistent)", r.ci_low, r.ci_high, truth)
        if abs(truth) > 1e-12:
            tally.call("size: the level's gain changes with size", True, r.p_adj < ALPHA)
        else:
            any_null = True
            any_fired |= bool(r.p_adj < ALPHA)
    if any_null:
        tally.call("size: the level's gain changes with size", False, any_fired)


def calibrate(
    scenarios: tuple[Scenario, ...],
    reps: int,
    random_state: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Tally:
    """Simulate ``reps`` sweeps per scenario and score the analysis on each."""
    tally = Tally()
    for i, sc in enumerate(scenarios):
        rng = np.random.default_rng([random_state, i])
        for _ in range(reps):
            df = simulate(sc, rng)
            score_claim(sc, df, tally)
            if "random" in sc.means:
                score_kinds(sc, df, tally)
            if len(next(iter(sc.means.values()))) >= 2:
                score_size(sc, df, tally)
        if progress:
            progress(f"  {sc.name}: {reps} sweeps")
    return tally


ARGMIN = "best-level set contains the best level"


def summary(tally: Tally) -> tuple[float, float, float]:
    """(min coverage over intervals, max false-positive rate over verdicts, argmin coverage)."""
    cover = {k: h / n for k, (h, n) in tally.coverage.items() if n}
    fpr = [h / n for (name, truth), (h, n) in tally.verdicts.items() if truth == "null" and n]
    return min(cover.values()), max(fpr), cover.get(ARGMIN, math.nan)


def table(tally: Tally) -> list[str]:
    """The printed rows: coverage per interval, FPR and power per verdict."""
    lines = ["interval (nominal 0.95)                                  coverage      n"]
    for name, (hits, n) in sorted(tally.coverage.items()):
        lines.append(f"{name:<56} {hits / n:8.3f} {n:6d}")
    lines += ["", "verdict (alpha 0.05)                          false-positive rate   power"]
    for name in sorted({k[0] for k in tally.verdicts}):
        cells = []
        for truth in ("null", "effect"):
            hits, n = tally.verdicts.get((name, truth), [0, 0])
            cells.append(f"{hits / n:.3f} ({n})" if n else "–")
        lines.append(f"{name:<46} {cells[0]:>14} {cells[1]:>14}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the calibration and print the table and the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=300, help="simulated sweeps per scenario")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    print(f"scenarios ({args.reps} sweeps each, {CLASSES} classes, target {CLASSES[TARGET]:g}):")
    tally = calibrate(SCENARIOS, args.reps, args.seed, progress=print)
    print("\n".join(["", *table(tally), ""]))
    c, f, a = summary(tally)
    summary_line = f"calibration: min coverage {c:.3f}, max false-positive rate {f:.3f}, "
    print(summary_line + f"argmin coverage {a:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
