"""Adaptive replicates: which cells still need seeds, with intervals valid under optional stopping.

The design (a spec's `replicates:` block, `Design`) fixes in advance the looks
`n_1 = initial, n_1 + step, ..., max` (seeds per cell at each look) and the
family-wise error `alpha`. Look k spends `alpha_k = a(t_k) - a(t_{k-1})` of it,
`t_k = n_k / max`, by a Lan-DeMets spending function `a` (O'Brien-Fleming-type
or Pocock-type), and every interval at look k is a t interval at level
`1 - alpha_k`. By the union bound the intervals of all looks hold together with
probability >= 1 - alpha (for normal per-seed errors, whatever the stopping
rule), so the interval at whatever look a comparison stopped is valid: a
time-uniform confidence sequence over the planned looks. The combination by
the union bound (Bonferroni over looks) is conservative next to exact
group-sequential boundaries, and needs no correlation between looks.

    Lan, K. K. G. and DeMets, D. L. (1983). Discrete sequential boundaries for
    clinical trials. Biometrika 70(3), 659-663.
    O'Brien, P. C. and Fleming, T. R. (1979). A multiple testing procedure for
    clinical trials. Biometrics 35(3), 549-556.
    Pocock, S. J. (1977). Group sequential methods in the design and analysis
    of clinical trials. Biometrika 64(2), 191-199.

The unit of every comparison is the seed-paired difference (seed s is the
same data subset and init in every arm). `evaluate(design, rows, seeds)` walks
the looks in order over a results table and returns, per comparison and cell,
where it stopped and why, and which (cell, seed) trials the current look still
needs. It is a pure function of the table, so a driver killed mid-round
replays the same decisions and continues where it stopped.

Why a top-level module: the driver (sweeps/runner.py) decides each round and
the report (analysis/report.py) shows the same decisions; sweeps must not
import analysis, nor analysis sweeps, and contracts.py must stay stdlib-only.
It imports contracts, numpy and scipy only, and every package may import it
(docs/ARCHITECTURE.md, "Imports").

Longer than 400 lines because the design, the comparisons it tests and the coverage check share
one alpha-spending rule, and this top-level module may import only contracts, numpy and scipy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts import SCRATCH, Cell, kind_order

SPENDING = ("obrien_fleming", "pocock")
RULES = ("gain", "hierarchy", "u_test", "half_width", "best_level")  # best_level: racing.py
METHOD = (
    "group-sequential t intervals: Lan-DeMets alpha spending ({spending}-type) over the planned "
    "looks, combined by the union bound (Lan & DeMets 1983, Biometrika 70:659)"
)


@dataclass(frozen=True)
class Design:
    """When to look and how much error to spend: the spec's `replicates:` block."""

    initial: int
    max: int
    step: int = 1
    alpha: float = 0.05
    spending: str = "obrien_fleming"
    stop_when: tuple[str, ...] = ("gain", "hierarchy", "u_test")
    half_width: float | None = None
    margin: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not 2 <= self.initial <= self.max:
            problems.append(f"initial={self.initial}: need 2 <= initial <= max ({self.max})")
        if self.step < 1:
            problems.append(f"step={self.step}: need >= 1")
        if not 0 < self.alpha < 1:
            problems.append(f"alpha={self.alpha}: need 0 < alpha < 1")
        if self.spending not in SPENDING:
            problems.append(f"spending={self.spending!r}: accepted {', '.join(SPENDING)}")
        bad = [r for r in self.stop_when if r not in RULES]
        if bad or not self.stop_when:
            problems.append(f"stop_when={list(self.stop_when)}: give some of {', '.join(RULES)}")
        if "half_width" in self.stop_when and not (self.half_width or 0) > 0:
            problems.append("stop_when has half_width: give half_width > 0 (error units)")
        if self.margin < 0:
            problems.append(f"margin={self.margin}: need >= 0")
        if "best_level" in self.stop_when and self.initial >= self.max:
            problems.append(
                f"stop_when has best_level: a race needs rounds, but initial={self.initial} "
                f"is max={self.max} (fixed seeds only); give max > initial"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Design:
        d = dict(d)
        d["stop_when"] = tuple(d.get("stop_when", cls.stop_when))
        return cls(**d)

    def looks(self) -> list[int]:
        """Seeds per cell at each look: initial, initial + step, ..., max (max always a look)."""
        out = list(range(self.initial, self.max + 1, self.step))
        return out if out[-1] == self.max else [*out, self.max]

    def look_alphas(self) -> list[float]:
        """The error each look spends; they sum to `alpha`."""
        spent = [spent_alpha(n / self.max, self.alpha, self.spending) for n in self.looks()]
        return [b - a for a, b in zip([0.0, *spent[:-1]], spent, strict=True)]

    def round_of(self, seed_index: int) -> int:
        """The round (look index) whose seeds include the seed at this position first."""
        return next(k for k, n in enumerate(self.looks()) if seed_index < n)

    def method(self) -> str:
        return METHOD.format(
            spending={"pocock": "Pocock", "obrien_fleming": "O'Brien-Fleming"}[self.spending]
        )


def _sps() -> Any:
    """scipy.stats, imported on first use: reading a spec (which builds a Design) stays fast."""
    from scipy import stats

    return stats


def spent_alpha(t: float, alpha: float, spending: str) -> float:
    """Lan-DeMets spending function: error spent by information fraction t in (0, 1]."""
    sps = _sps()
    t = min(max(t, 0.0), 1.0)
    if t == 0:
        return 0.0
    if spending == "obrien_fleming":
        return float(2.0 - 2.0 * sps.norm.cdf(sps.norm.ppf(1 - alpha / 2) / math.sqrt(t)))
    if spending == "pocock":
        return float(alpha * math.log(1.0 + (math.e - 1.0) * t))
    raise ValueError(f"Unknown spending ({spending}); accepted: {', '.join(SPENDING)}")


@dataclass(frozen=True)
class Interval:
    """A t interval of a mean over seeds at level 1 - alpha."""

    n: int
    mean: float
    low: float
    high: float
    alpha: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: Sequence[float] | np.ndarray, alpha: float) -> Interval:
    """Mean +- t_{1-alpha/2, n-1} sd / sqrt(n); fewer than 2 values: an infinite interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    sps = _sps()
    mean = float(v.mean()) if n else math.nan
    if n < 2:
        return Interval(n, mean, -math.inf, math.inf, alpha)
    half = float(sps.t.ppf(1 - alpha / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return Interval(n, mean, mean - half, mean + half, alpha)


# ---------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class Comparison:
    """A question the sweep asks of paired differences; `contrasts` are weighted sums of cells.

    gain / hierarchy: one contrast (positive: the first-named side is better).
    u_test: over the levels at or finer than the target, per level j a claim (a
    list of contrasts that must all be > 0): interior j, "target - j > 0 and
    finest - j > 0" (j beats both ends: the paper's claim, not that j is the
    argmin); an end level, "every other level - j > 0" (monotone). Each claim gets
    alpha_k / (number of claims), one-sided, so whichever claim is made is valid.
    The hierarchy comparisons form one family: each gets alpha_k / (their
    number), Bonferroni, where the fixed analysis uses Holm.
    """

    rule: str
    name: str
    cells: tuple[Cell, ...]
    claims: tuple[tuple[str, tuple[tuple[tuple[Cell, float], ...], ...]], ...]


def _contrast(plus: Iterable[Cell], minus: Iterable[Cell], w: float = 1.0) -> tuple:
    return tuple([(c, w) for c in plus] + [(c, -w) for c in minus])


def comparisons(
    rows: Sequence[Mapping[str, Any]], target: str | None, rules: Sequence[str]
) -> list[Comparison]:
    """The sweep's comparisons (of `rules`) from the cells the rows name.

    The same questions as analysis/estimators.py asks of a fixed sweep: gains
    over scratch and over the target level (BaselineGain), pooled kind pairs at
    matched class counts finer than the target without shared label functions
    (HierarchyComparison), and the shape of each arm's curve over the levels at or
    finer than the target (analysis.claim: a finer level beats the target and the
    finest level is worse than it).
    """
    info: dict[Cell, dict[str, Any]] = {}
    for r in rows:
        i = info.setdefault(Cell.of(r), {"num_classes": r["num_classes"], "label_fns": set()})
        i["label_fns"].add(str(r.get("label_fn")))
    out: list[Comparison] = []
    groups = sorted({(c[2], c[3]) for c in info})
    for f, b in groups:
        here = {c: i for c, i in info.items() if (c[2], c[3]) == (f, b)}
        arms = [c for c in here if not _is_scratch(c)]
        tl = _target_level(here, arms, target)
        # Without a target level every count counts as finer (as HierarchyComparison).
        target_k = here[tl[0]]["num_classes"] if tl else -math.inf
        if "gain" in rules:
            out += _gain_comparisons(here, arms, tl)
        if "hierarchy" in rules:
            out += _kind_comparisons(here, arms, target_k)
        if "u_test" in rules:
            out += _shape_comparisons(here, arms, target_k)
    return out


def _is_scratch(cell: Cell) -> bool:
    """A scratch arm's cell, whatever its label (`scratch`, `scratch_plain`): it has no level."""
    return cell.level_name == SCRATCH


def _target_level(here: dict, arms: list[Cell], target: str | None) -> list[Cell]:
    """The target-level cell (a list of at most one): as BaselineGain finds it."""
    scratch = [c for c in here if _is_scratch(c)]
    manual = [c for c in arms if c[0] == "manual"]
    tl = [c for c in manual if c[1] == str(target)]
    if not tl and scratch:  # the manual level with the target's class count
        tl = [c for c in manual if here[c]["num_classes"] == here[scratch[0]]["num_classes"]]
    return tl[:1]


def _gain_comparisons(here: dict, arms: list[Cell], tl: list[Cell]) -> list[Comparison]:
    scratch = [c for c in here if _is_scratch(c)]
    out = []
    for base_name, base in (("scratch", scratch[:1]), ("target level", tl[:1])):
        if not base:
            continue
        for c in arms:
            if c == base[0]:
                continue
            name = f"gain of {_label(c)} over {base_name}"
            out.append(Comparison("gain", name, (c, base[0]), (("", (_contrast(base, [c]),)),)))
    return out


def _kind_comparisons(here: dict, arms: list[Cell], target_k: float) -> list[Comparison]:
    out = []
    finer = [c for c in arms if here[c]["num_classes"] > target_k]
    for a, b in itertools.combinations(kind_order(c[0] for c in finer), 2):
        ca = {here[c]["num_classes"]: c for c in finer if c[0] == a}
        cb = {here[c]["num_classes"]: c for c in finer if c[0] == b}
        pairs = [
            (ca[k], cb[k])
            for k in sorted(set(ca) & set(cb))
            if here[ca[k]]["label_fns"]
            != here[cb[k]]["label_fns"]  # same partition: 0 by construction
        ]
        if not pairs:
            continue
        w = 1.0 / len(pairs)
        contrast = _contrast([p[1] for p in pairs], [p[0] for p in pairs], w)
        f, bb = pairs[0][0][2], pairs[0][0][3]
        name = f"{a} vs {b} (f{f:g}/{bb}, {len(pairs)} class counts)"
        cells = tuple(c for p in pairs for c in p)
        out.append(Comparison("hierarchy", name, cells, (("", (contrast,)),)))
    return out


def _shape_comparisons(here: dict, arms: list[Cell], target_k: float) -> list[Comparison]:
    out = []
    domain = [c for c in arms if here[c]["num_classes"] >= target_k]
    for kind in kind_order(c[0] for c in domain):
        levels = sorted((c for c in domain if c[0] == kind), key=lambda c: here[c]["num_classes"])
        if len(levels) < 3:
            continue
        first, last = levels[0], levels[-1]
        claims = []
        for j in levels:
            if j in (first, last):
                others = [c for c in levels if c != j]
                what = "minimum at " + ("the coarsest" if j == first else "the finest")
                claims.append(
                    (f"{what} level ({j[1]})", tuple(_contrast([o], [j]) for o in others))
                )
            else:
                claims.append(
                    (
                        # Lower than both ends: the paper's claim, not that j is the argmin.
                        f"{j[1]} beats both {first[1]} and {last[1]}",
                        (_contrast([first], [j]), _contrast([last], [j])),
                    )
                )
        f, b = first[2], first[3]
        out.append(
            Comparison("u_test", f"shape of {kind} (f{f:g}/{b})", tuple(levels), tuple(claims))
        )
    return out


def _label(c: Cell) -> str:
    """A cell (or a plain 4-tuple, as read back from JSON) as its key."""
    return Cell(*c).key


# ---------------------------------------------------------------- the walk over looks
@dataclass
class Outcome:
    """Where one comparison (or one cell's half-width rule) stopped, and why."""

    rule: str
    name: str
    cells: tuple[Cell, ...]
    status: str = "open"  # open | decided | equivalent | max
    verdict: str = ""
    look: int = -1
    n: int = 0
    interval: Interval | None = None

    @property
    def reason(self) -> str:
        if self.status == "open":
            return "open: needs the next look's seeds"
        ci = self.interval
        text = f"[{ci.low:.4f}, {ci.high:.4f}] at level {1 - ci.alpha:.4f}" if ci else ""
        return {
            "decided": f"decided at look {self.look + 1} ({self.n} seeds): {self.verdict} {text}",
            "equivalent": f"settled at look {self.look + 1} ({self.n} seeds): {self.verdict} {text}",
            "max": f"not settled within max ({self.n} seeds): {self.verdict} {text}",
        }[self.status]


@dataclass
class State:
    """The result of `evaluate`: outcomes, the current look, and what it still needs."""

    design: Design
    outcomes: list[Outcome]
    look: int  # index of the look being filled (len(looks) when every rule has stopped)
    todo: list[tuple[Cell, int]] = field(default_factory=list)  # (cell, seed) still to run
    seeds_run: dict[Cell, int] = field(default_factory=dict)  # cell -> seeds with a result
    cells: list[Cell] = field(default_factory=list)  # every cell of the table
    races: list[Any] = field(default_factory=list)  # best_level's races (racing.Race), if any

    @property
    def done(self) -> bool:
        return not self.todo

    def trials_needed(self) -> int:
        """Trials the design asks for so far: per cell, the seeds of its last-stopping rule."""
        needed = self.cell_seeds()
        return sum(needed.get(c, (self.design.initial, ""))[0] for c in self.cells)

    def cell_seeds(self) -> dict[Cell, tuple[int, str]]:
        """cell -> (seeds it needs in all, why it stopped there)."""
        looks = self.design.looks()
        out: dict[Cell, tuple[int, str]] = {}
        for o in self.outcomes:
            for c in o.cells:
                # An open race lane may be a look ahead of the other rules: the later one counts.
                k = o.look if o.status != "open" else min(max(self.look, o.look), len(looks) - 1)
                if c not in out or looks[k] > out[c][0]:
                    out[c] = (looks[k], f"{o.name} ({o.status})")
        return out


def evaluate(
    design: Design,
    rows: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    *,
    target: str | None = None,
    value: str = "value",
    naive: bool = False,
) -> State:
    """Walk the looks over a results table; what stopped, why, and what the current look needs.

    `rows`: one mapping per planned (cell, seed) trial with `hierarchy`,
    `level_name`, `data_fraction`, `backbone`, `num_classes`, `label_fn`,
    `seed` and `value` (the metric; absent or None: not run yet; NaN: failed,
    which counts as done and is left out of the intervals). `seeds`: the
    design's seeds in order (`max` of them). `naive=True` spends the full
    alpha at every look (the ordinary t intervals, invalid under peeking; for
    the simulation only).
    """
    looks = design.looks()
    if len(seeds) < design.max:
        raise ValueError(f"{len(seeds)} seeds given, the design needs max={design.max}")
    alphas = [design.alpha] * len(looks) if naive else design.look_alphas()
    values: dict[tuple[Cell, int], float] = {}
    for r in rows:
        v = r.get(value)
        if v is not None:
            values[(Cell.of(r), int(r["seed"]))] = float(v)
    rules = [r for r in design.stop_when if r != "half_width"]
    comps = comparisons(rows, target, rules)
    # The kind pairs are one family (the fixed analysis Holm-adjusts them): Bonferroni over it.
    family = {"hierarchy": max(1, sum(c.rule == "hierarchy" for c in comps))}
    outcomes = [Outcome(c.rule, c.name, c.cells) for c in comps]
    specs = {c.name: c for c in comps}
    if "half_width" in design.stop_when:
        outcomes += [
            Outcome("half_width", f"mean of {_label(c)}", (c,))
            for c in dict.fromkeys(Cell.of(r) for r in rows)
        ]
    all_cells = list(dict.fromkeys(Cell.of(r) for r in rows))
    seeds_run: dict[Cell, int] = {}
    for (c, _s), _v in values.items():
        seeds_run[c] = seeds_run.get(c, 0) + 1
    for k, n in enumerate(looks):
        open_ = [o for o in outcomes if o.status == "open"]
        if not open_ and k > 0:
            return State(design, outcomes, k, [], seeds_run, all_cells)
        # The first look runs every cell (a cell in no comparison still gets `initial` seeds).
        need = all_cells if k == 0 else list(dict.fromkeys(c for o in open_ for c in o.cells))
        todo = [(c, s) for c in need for s in seeds[:n] if (c, s) not in values]
        if todo:
            return State(design, outcomes, k, todo, seeds_run, all_cells)
        for o in open_:
            a = alphas[k] / family.get(o.rule, 1)
            _judge(o, specs.get(o.name), values, seeds[:n], a, design, k, k == len(looks) - 1)
    return State(design, outcomes, len(looks), [], seeds_run, all_cells)


def _per_seed(contrast: tuple, values: Mapping, seeds: Sequence[int]) -> np.ndarray:
    out = [sum(w * values[(c, s)] for c, w in contrast) for s in seeds]
    return np.asarray(out, dtype=float)  # NaN where a cell failed: dropped by t_interval


def _judge(
    o: Outcome,
    comp: Comparison | None,
    values: Mapping,
    seeds: Sequence[int],
    alpha: float,
    design: Design,
    k: int,
    last: bool,
) -> None:
    if comp is None:  # a cell's half-width rule
        ci = t_interval([values[(o.cells[0], s)] for s in seeds], alpha)
        o.interval, o.n, o.look = ci, ci.n, k
        if ci.half_width <= (design.half_width or 0):
            o.status, o.verdict = (
                "decided",
                f"half-width {ci.half_width:.4f} <= {design.half_width}",
            )
        elif last:
            o.status, o.verdict = "max", f"half-width {ci.half_width:.4f} > {design.half_width}"
        return
    if o.rule == "u_test":
        # Each claim's contrasts are tested one-sided (> 0) at alpha / claims: the two-sided
        # interval at twice that level has the same lower bound.
        a = 2 * alpha / len(comp.claims)
        for label, contrasts in comp.claims:
            cis = [t_interval(_per_seed(c, values, seeds), a) for c in contrasts]
            if all(ci.low > 0 for ci in cis):
                o.status, o.verdict, o.look = "decided", label, k
                o.interval, o.n = min(cis, key=lambda ci: ci.low), min(ci.n for ci in cis)
                return
        o.look, o.n = k, len(seeds)
        if last:
            o.status, o.verdict = "max", "no shape established"
        return
    ci = t_interval(_per_seed(comp.claims[0][1][0], values, seeds), alpha)
    o.interval, o.n, o.look = ci, ci.n, k
    if ci.low > 0 or ci.high < 0:
        o.status = "decided"
        o.verdict = "first better" if ci.low > 0 else "second better"
        if o.rule == "gain":
            o.verdict = "gain > 0" if ci.low > 0 else "gain < 0"
    elif design.margin > 0 and -design.margin < ci.low and ci.high < design.margin:
        o.status, o.verdict = "equivalent", f"|difference| < margin {design.margin}"
    elif last:
        o.status, o.verdict = "max", "interval contains 0"


# ---------------------------------------------------------------- the coverage simulation
def coverage(
    design: Design,
    *,
    effect: float = 0.0,
    sd: float = 1.0,
    n_sim: int = 2000,
    random_state: int = 0,
    naive: bool = False,
) -> dict[str, float]:
    """Coverage of the stopped interval of one paired difference, peeking at every look.

    The peeking rule is the worst an analyst does: stop at the first look
    whose interval excludes 0 (else at max). Returns the coverage of the true
    `effect`, the rate of stopping on a "significant" interval, and the mean
    seeds used. Vectorised over simulations.
    """
    sps = _sps()
    rng = np.random.default_rng(random_state)
    looks = design.looks()
    alphas = [design.alpha] * len(looks) if naive else design.look_alphas()
    x = rng.normal(effect, sd, size=(n_sim, design.max))
    stopped = np.zeros(n_sim, bool)
    covered = np.zeros(n_sim, bool)
    significant = np.zeros(n_sim, bool)
    used = np.full(n_sim, design.max, float)
    for k, (n, a) in enumerate(zip(looks, alphas, strict=True)):
        m = x[:, :n].mean(axis=1)
        half = sps.t.ppf(1 - a / 2, n - 1) * x[:, :n].std(axis=1, ddof=1) / math.sqrt(n)
        low, high = m - half, m + half
        stop = ~stopped & ((low > 0) | (high < 0) | (k == len(looks) - 1))
        covered[stop] = (low[stop] <= effect) & (effect <= high[stop])
        significant[stop] = (low[stop] > 0) | (high[stop] < 0)
        used[stop] = n
        stopped |= stop
    return {
        "coverage": float(covered.mean()),
        "stopped_significant": float(significant.mean()),
        "mean_seeds": float(used.mean()),
    }
