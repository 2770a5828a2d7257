"""Best-level racing (`stop_when: [best_level]`): per group, drop the levels that have lost.

A group is one hierarchy kind at one data fraction and backbone; its levels race.
After each look of the design (`sequential.Design`), every level still in the race
is compared with a reference level on the seed-paired differences of the look's
seeds; a level leaves the race (gets no more seeds) when its deficit to the
reference is decided (interval of `level - reference` above 0: "worse"), or, with
`margin` > 0, when it is shown unable to beat the reference by more than `margin`
(lower bound above `-margin`: "within margin" when the interval lies inside
+-margin, else "not better by margin"). Every level still in the race gets
the next look's seeds, so the differences stay paired. The race ends when one
level remains (the winner) or at `max` (undecided: the levels left are reported).

The reference is the level with the lowest mean error among those racing, except
that once a level has absorbed a within-margin drop it becomes the race's anchor:
it stays the reference, cannot itself be dropped as within margin, and leaves only
when another level is decided better than it, which then becomes the anchor.

The guarantee: P(the winner's true error exceeds the best level's by more than
`margin`) <= `alpha`, whatever the data and the stopping. Every decision reads the
lower bound of a one-sided interval of `mu_level - mu_reference` at look k's level
`alpha_k / m` (`alpha_k` the design's spending at look k). With `margin` = 0 only
"worse" drops happen, and the best level b leaves only if one of its own L - 1
lower bounds `mu_b - mu_j` is above its true value: m = L - 1 (Paulson-type
elimination with Lan-DeMets spending). With `margin` > 0 the proof follows the
anchor (b's margin drop puts the anchor within margin of b; an anchor is only
replaced by a level decided better), which needs the bounds of any ordered pair:
m = L (L - 1). The union bound over looks and pairs gives the guarantee; the
intervals are t intervals of the paired differences (normal per-seed noise).

    Paulson, E. (1964). A sequential procedure for selecting the population with
    the largest mean from k normal populations. Ann. Math. Statist. 35, 174-180.

Why a top-level module: like sequential.py, the driver (sweeps/rounds.py) decides
the rounds with it and the report (analysis/) shows the same races, and neither
package may import the other. It imports contracts, sequential, numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts import SCRATCH, Cell
from sequential import Design, Interval, Outcome, State, t_interval
from sequential import evaluate as evaluate_comparisons

RULE = "best_level"
# Seed-bootstrap resamples for the probability of being best (report only).
BOOTSTRAP = 4000
MARGIN_DROPS = ("within margin", "not better by margin")
DROPPED = ("worse", *MARGIN_DROPS)


@dataclass
class Lane:
    """One level in a race: where it left the race and why."""

    level: Hashable
    status: str = "racing"  # racing | worse | within margin | not better by margin | winner
    look: int = -1  # the look at which it left (or the race ended)
    seeds: int = 0  # seeds it ran in the race
    against: Hashable | None = None  # the reference it was compared with when it left
    interval: Interval | None = None  # of level - reference at that look


@dataclass
class Race:
    """The race of one group: its lanes, its status and its winner."""

    group: tuple[Any, ...]
    lanes: list[Lane]
    tests: int  # one-sided comparisons each look's alpha is divided among
    status: str = "open"  # open | decided | max
    look: int = 0  # the look being filled (open) or at which it ended
    anchor: Hashable | None = None
    winner: Hashable | None = None  # one level left; at max: the reference (lowest mean)
    winner_interval: Interval | None = None  # the winner's mean error at its last look

    @property
    def racing(self) -> list[Lane]:
        return [ln for ln in self.lanes if ln.status in ("racing", "winner")]

    def lane(self, level: Hashable) -> Lane:
        return next(ln for ln in self.lanes if ln.level == level)

    def within_margin(self) -> list[Hashable]:
        """Levels shown within +-margin of the winner itself (the winner first), if any."""
        near = [
            ln.level
            for ln in self.lanes
            if ln.status == "within margin" and ln.against == self.winner
        ]
        return [self.winner, *near] if near and self.winner is not None else []

    @property
    def by_margin(self) -> bool:
        """Did a level leave by the margin? Then the claim is "within margin of the best"."""
        return any(ln.status in MARGIN_DROPS for ln in self.lanes)


def race_tests(levels: int, margin: float) -> int:
    """How many one-sided comparisons share each look's alpha (see the module docstring)."""
    return max(1, levels - 1) if margin == 0 else levels * (levels - 1)


def _paired(values: Mapping, a: Hashable, b: Hashable, seeds: Sequence[int]) -> np.ndarray:
    """Per seed, a's value minus b's (NaN where either failed)."""
    return np.asarray([values[(a, s)] - values[(b, s)] for s in seeds], dtype=float)


def _mean(values: Mapping, level: Hashable, seeds: Sequence[int]) -> float:
    v = np.asarray([values[(level, s)] for s in seeds], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.inf


def run_race(
    design: Design,
    group: tuple[Any, ...],
    levels: Sequence[Hashable],
    values: Mapping[tuple[Hashable, int], float],
    seeds: Sequence[int],
) -> tuple[Race, list[tuple[Hashable, int]]]:
    """Walk the looks of one group's race over `values` ((level, seed) -> error; NaN: failed).

    Returns the race and the (level, seed) trials its current look still needs
    (empty when it has ended). A pure function of `values`: a replay decides alike.
    """
    looks, alphas = design.looks(), design.look_alphas()
    race = Race(group, [Lane(lv) for lv in levels], race_tests(len(levels), design.margin))
    for k, n in enumerate(looks):
        race.look = k
        here = seeds[:n]
        racing = [ln.level for ln in race.racing]
        todo = [(lv, s) for lv in racing for s in here if (lv, s) not in values]
        if todo:
            return race, todo
        for ln in race.racing:
            ln.seeds = n
        _decide(race, values, here, 2 * alphas[k] / race.tests, design.margin, k)
        left = race.racing
        if len(left) == 1 or k == len(looks) - 1:
            race.status = "decided" if len(left) == 1 else "max"
            race.winner = race.anchor if race.anchor is not None else _best(values, left, here)
            race.winner_interval = t_interval([values[(race.winner, s)] for s in here], alphas[k])
            if len(left) == 1:
                left[0].status, left[0].look = "winner", k
            return race, []
    return race, []


def _best(values: Mapping, lanes: Sequence[Lane], seeds: Sequence[int]) -> Hashable:
    return min(lanes, key=lambda ln: _mean(values, ln.level, seeds)).level


def _decide(
    race: Race, values: Mapping, seeds: Sequence[int], a: float, margin: float, k: int
) -> None:
    """One look's drops against the reference (two-sided level `a`: one-sided `a / 2` bounds)."""
    ref = race.anchor if race.anchor is not None else _best(values, race.racing, seeds)
    for ln in [x for x in race.racing if x.level != ref]:
        ci = t_interval(_paired(values, ln.level, ref, seeds), a)
        if ci.low > 0:
            ln.status = "worse"
        elif race.anchor is not None and ci.high < 0:  # decided better than the anchor
            anchor = race.lane(ref)
            anchor.status, anchor.look, anchor.against = "worse", k, ln.level
            anchor.interval = t_interval(_paired(values, ref, ln.level, seeds), a)
            race.anchor = ln.level
            return  # the others meet the new anchor at the next look
        elif margin > 0 and ci.low > -margin:
            ln.status = MARGIN_DROPS[0] if ci.high < margin else MARGIN_DROPS[1]
            race.anchor = ref
        else:
            continue
        ln.look, ln.against, ln.interval = k, ref, ci


# ---------------------------------------------------------------- races of a sweep
def race_groups(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[Any, ...], list[Cell]]:
    """(kind, data fraction, backbone) -> its level cells, coarse to fine (scratch races not)."""
    classes: dict[Cell, int] = {}
    for r in rows:
        classes.setdefault(Cell.of(r), int(r["num_classes"]))
    groups: dict[tuple[Any, ...], list[Cell]] = {}
    for c in classes:
        if c.level_name != SCRATCH:  # scratch arms (any label) have no level and race not
            groups.setdefault((c.hierarchy, c.data_fraction, c.backbone), []).append(c)
    return {g: sorted(cs, key=lambda c: classes[c]) for g, cs in groups.items()}


def evaluate(
    design: Design,
    rows: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    *,
    target: str | None = None,
) -> State:
    """`sequential.evaluate` with the races of `best_level` (if the design names it) merged in.

    The races' lanes join the outcomes (rule `best_level`, one per level: its seeds
    and why it stopped), their trials join `todo`, and `state.races` holds them.
    """
    state = evaluate_comparisons(design, rows, seeds, target=target)
    if RULE not in design.stop_when:
        return state
    values: dict[tuple[Hashable, int], float] = {}
    for r in rows:
        if r.get("value") is not None:
            values[(Cell.of(r), int(r["seed"]))] = float(r["value"])
    todo = list(state.todo)
    looks = [state.look] if state.todo else []
    for group, cells in race_groups(rows).items():
        race, need = run_race(design, group, cells, values, seeds)
        state.races.append(race)
        state.outcomes += [_outcome(race, ln) for ln in race.lanes]
        todo += [t for t in need if t not in todo]
        looks += [race.look] if need else []
    state.todo = todo
    state.look = min(looks) if looks else len(design.looks())
    return state


def _outcome(race: Race, ln: Lane) -> Outcome:
    """A lane as a sequential.Outcome: the report's tables and the seed counts read these."""
    name = f"{ln.level.key} in the race of {group_label(race.group)}"
    status = {"worse": "decided", "winner": "decided"}.get(
        ln.status,
        "equivalent" if ln.status in MARGIN_DROPS else "max" if race.status == "max" else "open",
    )
    verdict = drop_reason(ln) or {"winner": "best level"}.get(ln.status, "still in the race")
    look = ln.look if ln.look >= 0 else race.look
    return Outcome(RULE, name, (ln.level,), status, verdict, look, ln.seeds, ln.interval)


def race_summary(races: Sequence[Race]) -> str:
    """One line: how many races ended, how, and how many levels left them early."""
    ended = [r for r in races if r.status == "decided"]
    near = sum(1 for r in ended if r.by_margin)
    undecided = sum(1 for r in races if r.status == "max")
    racing = sum(1 for r in races if r.status == "open")
    dropped = sum(1 for r in races for ln in r.lanes if ln.status in DROPPED)
    lanes = sum(len(r.lanes) for r in races)
    text = (
        f"best-level races: {len(ended)} of {len(races)} groups decided "
        f"({len(ended) - near} with one winner, {near} by the margin), {undecided} not decided "
        f"within max"
    )
    text += f", {racing} still racing" if racing else ""
    return text + f"; {dropped} of {lanes} levels dropped early"


def drop_reason(ln: Lane) -> str:
    """Why a level left the race ("worse than class"), or "" for one still in it or the winner."""
    against = level_name(ln.against)
    return {
        "worse": f"worse than {against}",
        "within margin": f"within margin of {against}",
        "not better by margin": f"not better than {against} by more than the margin",
    }.get(ln.status, "")


def group_label(group: tuple[Any, ...]) -> str:
    kind, fraction, backbone = group
    return f"{kind} f{fraction:g}/{backbone}"


def best_probability(race: Race, values: Mapping, seeds: Sequence[int], seed: int = 0) -> float:
    """Seed-bootstrap probability that the winner's error is below every other level's.

    Each other level's paired differences to the winner over the seeds both ran
    are resampled (seeds with replacement); the probability is the share of
    resamples in which every mean difference is > 0.
    """
    if race.winner is None:
        return math.nan
    rng = np.random.default_rng(seed)
    beaten = np.ones(BOOTSTRAP, dtype=bool)
    for ln in race.lanes:
        if ln.level == race.winner:
            continue
        d = _paired(values, ln.level, race.winner, seeds[: ln.seeds])
        d = d[np.isfinite(d)]
        if d.size == 0:
            return math.nan
        idx = rng.integers(0, d.size, size=(BOOTSTRAP, d.size))
        beaten &= d[idx].mean(axis=1) > 0
    return float(beaten.mean())


def level_name(level: Hashable) -> str:
    """A cell's level name; a plain level (the simulation's index) as itself."""
    return str(getattr(level, "level_name", level))


def verdict(race: Race, values: Mapping, seeds: Sequence[int]) -> str:
    """The race's answer as a sentence: pretrain on L (P best), or the levels within margin."""
    name = level_name(race.winner) if race.winner is not None else ""
    near = [level_name(c) for c in race.within_margin()]
    p = best_probability(race, values, seeds)
    if race.status == "open":
        return "still racing"
    if race.status == "max":
        left = [level_name(ln.level) for ln in race.racing]
        return (
            f"not decided within max: levels {', '.join(left)} still in the race; lowest mean "
            f"{name} (P(best) {p:.2f})"
        )
    if near:
        return f"levels {' and '.join(near)} are within margin (pretrain on {name})"
    if race.by_margin:
        return (
            f"pretrain on level {name}: no level is better by more than the margin "
            f"(P(best) {p:.2f})"
        )
    return f"pretrain on level {name} (P(best) {p:.2f})"


# ---------------------------------------------------------------- the simulation
def false_claim(race: Race, means: Sequence[float], margin: float) -> bool:
    """Is the race's answer wrong about planted `means` (level i's true error is means[i])?

    Wrong: a winner worse than the best by more than `margin`, or, where no level
    left by the margin ("pretrain on L", L beats every level), another level at
    least as good as L.
    Undecided races make no claim.
    """
    if race.status != "decided":
        return False
    w = means[race.winner]
    if w > min(means) + margin:
        return True
    others = [m for i, m in enumerate(means) if i != race.winner]
    return not race.by_margin and min(others) <= w


def simulate(
    design: Design,
    means: Sequence[float],
    *,
    sd: float = 1.0,
    seed_sd: float = 1.0,
    n_sim: int = 1000,
    random_state: int = 0,
) -> dict[str, float]:
    """Races on a planted curve: level i's error on seed s is means[i] + u_s + e_is.

    `u_s` (sd `seed_sd`) is the seed's shared effect, which pairing removes;
    `e_is` (sd `sd`) the level's own noise. Returns the rate of false claims
    (`false_claim`), of undecided races, and the mean trials used next to the
    fixed design's `len(means) * max`.
    """
    rng = np.random.default_rng(random_state)
    levels = list(range(len(means)))
    seeds = list(range(design.max))
    wrong = undecided = trials = 0
    for _ in range(n_sim):
        x = (
            np.asarray(means)[:, None]
            + rng.normal(0, seed_sd, design.max)
            + rng.normal(0, sd, (len(means), design.max))
        )
        values = {(i, s): float(x[i, s]) for i in levels for s in seeds}
        race, _ = run_race(design, ("sim", 1.0, "-"), levels, values, seeds)
        wrong += false_claim(race, means, design.margin)
        undecided += race.status != "decided"
        trials += sum(ln.seeds for ln in race.lanes)
    return {
        "false_claims": wrong / n_sim,
        "undecided": undecided / n_sim,
        "mean_trials": trials / n_sim,
        "fixed_trials": float(len(means) * design.max),
    }
