"""Best-level racing: the simulated error rate against alpha, and the quickstart race vs fixed.

    python bench/bench_best_level.py                          # the simulation (a few minutes)
    python bench/bench_best_level.py --n-sim 300              # a quicker, noisier one
    python bench/bench_best_level.py --race DIR --fixed DIR   # + the quickstart, from two sweeps

Part 1 races the levels of planted curves (racing.simulate: level i's error on
seed s is mean_i + u_s + e_is, u_s a seed effect all levels share, which pairing
removes, e_is sd 1): an asymmetric V (the runner-up 1.5 sd behind), a flat
null, two near-ties (0.1 sd apart, the others 3 sd or more behind),
with looks at 3, 5, ... seeds up to max 8 and 16. It prints the rate of false
claims (a winner worse than the best by more than margin, or a single winner
where another level is as good) next to alpha, the rate of races undecided at
max, and the trials used next to the fixed design's (levels x max).

Part 2 reads two finished quickstart sweeps (their storage folders): the race
(`replicates={initial: 3, step: 2, max: 8, stop_when: [best_level]}`) and the
fixed 8 seeds; per group it prints the race's answer, the fixed sweep's lowest
mean and its 95% best-level set (analysis.stats.best_level_set), and the trials
of each.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from racing import evaluate, group_label, simulate, verdict
from sequential import Design

SHAPES = {
    "asymmetric V": [6.0, 3.0, 0.0, 1.5, 4.5],
    "flat null": [0.0, 0.0, 0.0, 0.0, 0.0],
    "two near-ties": [6.0, 0.1, 0.0, 3.0, 6.0],
}
QUICKSTART_RACE = "replicates={initial: 3, step: 2, max: 8, stop_when: [best_level]}"


def simulation_table(n_sim: int) -> None:
    print(
        f"races on planted curves ({n_sim} simulations per row; per-seed noise sd 1, seed "
        "effect sd 1; O'Brien-Fleming spending, looks every 2 seeds from 3):"
    )
    head = f"{'shape':>14} {'max':>3} {'margin':>6} {'alpha':>5} | {'false claims':>12}"
    print(head + f" {'(3 sd)':>6} {'undecided':>9} | {'trials':>6} {'fixed':>5}")
    for shape, means in SHAPES.items():
        for max_ in (8, 16):
            for margin in (0.0, 0.5):
                for alpha in (0.05, 0.2):
                    d = Design(3, max_, 2, alpha, stop_when=("best_level",), margin=margin)
                    out = simulate(d, means, n_sim=n_sim, random_state=1)
                    noise = 3 * math.sqrt(alpha * (1 - alpha) / n_sim)
                    print(
                        f"{shape:>14} {max_:>3} {margin:>6.1f} {alpha:>5.2f} | "
                        f"{out['false_claims']:>12.3f} {noise:>6.3f} {out['undecided']:>9.3f} | "
                        f"{out['mean_trials']:>6.1f} {out['fixed_trials']:>5.0f}"
                    )
    print("(false claims must stay at or below alpha, up to the simulation noise shown)\n")


def _rows(storage: Path):
    from sweeps.ledger.records import read_results
    from sweeps.plan import build_plan
    from sweeps.rounds import rows_of
    from sweeps.spec import load_spec

    spec = load_spec("quickstart")
    plan = build_plan(spec, write=False, storage=storage)
    results = read_results(storage)
    return plan, rows_of(plan.trials, results, set()), len(results)


def quickstart_table(race_dir: Path, fixed_dir: Path) -> None:
    import pandas as pd

    from analysis.stats import best_level_set

    plan, rows, n_race = _rows(race_dir)
    _, fixed_rows, n_fixed = _rows(fixed_dir)
    design = Design(3, 8, 2, stop_when=("best_level",))
    seeds = list(range(8))
    state = evaluate(design, rows, seeds, target=plan.target)
    values = _values(rows)
    fixed = pd.DataFrame(fixed_rows)
    print(f"quickstart: race {n_race} trials, fixed {n_fixed} trials ({QUICKSTART_RACE})")
    agree = 0
    for race in state.races:
        kind, fraction, backbone = race.group
        g = fixed[(fixed.hierarchy == kind) & (fixed.data_fraction == fraction)]
        wide = g.pivot(index="seed", columns="level_name", values="value")
        wide = wide[[c.level_name for c in (ln.level for ln in race.lanes)]]
        best = str(wide.mean().idxmin())
        in_set = [
            lv
            for lv, k in zip(wide.columns, best_level_set(wide.to_numpy(), 0.05), strict=True)
            if k
        ]
        left = {ln.level.level_name for ln in race.racing}
        # Agreement: the same lowest mean, and the fixed sweep's best set still in the race.
        same = race.winner is not None and race.winner.level_name == best and set(in_set) <= left
        agree += same
        print(
            f"  {group_label(race.group):>24}: race {verdict(race, values, seeds)}; "
            f"{sum(ln.seeds for ln in race.lanes)} trials | fixed: lowest mean {best}, "
            f"95% best set {in_set} | {'agrees' if same else 'differs'}"
        )
    print(
        f"  the race agrees with the fixed sweep (its lowest mean, its 95% best set still "
        f"racing) in {agree} of {len(state.races)} groups"
    )


def _values(rows) -> dict:
    from contracts import Cell

    return {(Cell.of(r), int(r["seed"])): float(r["value"]) for r in rows if r["value"] is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=1000)
    parser.add_argument("--race", type=Path, help="storage of the quickstart race")
    parser.add_argument("--fixed", type=Path, help="storage of the fixed quickstart")
    args = parser.parse_args()
    np.seterr(invalid="ignore")
    simulation_table(args.n_sim)
    if args.race and args.fixed:
        quickstart_table(args.race, args.fixed)


if __name__ == "__main__":
    main()
