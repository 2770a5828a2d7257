"""Adaptive replicates: coverage under peeking, and the quickstart with fixed vs adaptive seeds.

    python bench/bench_adaptive.py                   # both parts (the quickstart twice: minutes)
    python bench/bench_adaptive.py --coverage-only   # the simulation only (seconds)
    python bench/bench_adaptive.py --workdir DIR     # keep the sweeps (and reuse finished ones)

Part 1 simulates one seed-paired difference (normal, sd 1) and an analyst who
peeks at every look (3, 4, ..., 16 seeds) and stops at the first interval that
excludes 0: the coverage of the stopped interval for the sequential intervals
(sequential.py: Lan-DeMets alpha spending, union bound over looks) and for
ordinary 95% t intervals with the same peeking.

Part 2 runs the quickstart with its 8 fixed seeds, then again with
`replicates={initial: 3, step: 2}` (looks at 3, 5, 7, 8 seeds, max 8), and
prints the trial counts side by side and, per question, whether the adaptive
run reached the fixed run's verdict, a different one, or could not settle it
within max.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from sequential import SPENDING, Design, coverage

ADAPTIVE = "replicates={initial: 3, step: 2}"


def coverage_table(n_sim: int) -> None:
    print("coverage of the stopped 95% interval, peeking at every look 3..16 seeds (sd 1):")
    print(
        f"{'spending':>15} {'effect':>6} | {'sequential':>10} {'seeds':>5} | {'naive t':>8} {'seeds':>5}"
    )
    for spending in SPENDING:
        d = Design(initial=3, max=16, step=1, spending=spending)
        for effect in (0.0, 0.5, 1.0, 2.0):
            s = coverage(d, effect=effect, n_sim=n_sim, random_state=1)
            n = coverage(d, effect=effect, n_sim=n_sim, random_state=1, naive=True)
            print(
                f"{spending:>15} {effect:>6.1f} | {s['coverage']:>10.3f} {s['mean_seeds']:>5.1f} | "
                f"{n['coverage']:>8.3f} {n['mean_seeds']:>5.1f}"
            )
    print("(nominal 0.95; the naive intervals' coverage falls with the number of looks)\n")


def _run(workdir: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "sweeps.commands", "run", "quickstart", *args]
    subprocess.run(cmd, cwd=workdir, check=True, stdout=subprocess.DEVNULL)


def fixed_verdicts(df) -> dict[tuple, str]:
    from analysis import estimators as est

    out: dict[tuple, str] = {}
    for r in est.BaselineGain().fit(df).table_.itertuples():
        sig = r.pvalue < 0.05
        base = "scratch" if r.baseline == "scratch" else "target level"
        out[("gain", base, r.hierarchy, r.level_name, float(r.data_fraction))] = (
            ("gain > 0" if r.gain > 0 else "gain < 0") if sig else "no difference"
        )
    for r in est.HierarchyComparison().fit(df).pooled_.itertuples():
        sig = r.p_holm < 0.05
        out[("hierarchy", r.a, r.b, float(r.data_fraction))] = (
            ("first better" if r.advantage > 0 else "second better") if sig else "no difference"
        )
    for r in est.UCurve(n_boot=200).fit(df).results_.itertuples():
        out[("u_test", r.hierarchy, float(r.data_fraction))] = "U" if r.is_u else "no U"
    return out


def adaptive_verdicts(df, design: Design) -> tuple[dict[tuple, str], object]:
    from analysis.adaptive import adaptive_state

    state = adaptive_state(df, design)
    out: dict[tuple, str] = {}
    for o in state.outcomes:
        verdict = o.verdict if o.status == "decided" else "not settled"
        if o.rule == "gain":
            base = "scratch" if o.name.endswith("scratch") else "target level"
            c = o.cells[0]
            out[("gain", base, c[0], c[1], c[2])] = verdict
        elif o.rule == "hierarchy":
            out[("hierarchy", o.cells[0][0], o.cells[1][0], o.cells[0][2])] = verdict
        elif o.rule == "u_test":
            shape = (
                "U" if verdict.startswith("U") else ("no U" if o.status == "decided" else verdict)
            )
            out[("u_test", o.cells[0][0], o.cells[0][2])] = shape
    return out, state


def quickstart(workdir: Path) -> None:
    from analysis.load import load_runs
    from sweeps.spec import load_spec

    _run(workdir)
    _run(workdir, "name=quickstart_adaptive", ADAPTIVE)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    fixed = load_runs("quickstart", uri)
    adaptive = load_runs("quickstart_adaptive", uri)
    design = load_spec("quickstart", [ADAPTIVE]).design()
    fv = fixed_verdicts(fixed)
    av, state = adaptive_verdicts(adaptive, design)
    print(f"quickstart, {ADAPTIVE} (looks at {design.looks()} seeds, {design.method()}):")
    print(f"{'':>28} {'fixed 8 seeds':>14} {'adaptive':>9}")
    print(f"{'trials':>28} {len(fixed):>14} {len(adaptive):>9}")
    seeds_f, seeds_a = Counter(fixed["seed"]), Counter(adaptive["seed"])
    for s in sorted(seeds_f):
        print(f"{f'trials of seed {int(s)}':>28} {seeds_f[s]:>14} {seeds_a.get(s, 0):>9}")
    tally: Counter = Counter()
    lines = []
    for key, f in sorted(fv.items(), key=str):
        if key not in av:  # BaselineGain also lists the target level over itself (gain 0)
            continue
        a = av[key]
        fixed_open = f in ("no difference", "no U")
        if a == f:
            kind = "same verdict"
        elif fixed_open and a == "not settled":
            kind = "same: neither decides"
        elif a == "not settled":
            kind = "fixed decides, adaptive not settled within max"
        elif fixed_open:
            kind = "adaptive decides, fixed does not"
        else:
            kind = "different verdict"
        tally[(key[0], kind)] += 1
        if not kind.startswith("same"):
            lines.append(f"  {'/'.join(map(str, key))}: fixed {f}, adaptive {a}")
    print("\nverdicts, fixed vs adaptive (per question):")
    for (rule, kind), n in sorted(tally.items()):
        print(f"  {rule:>10}: {n:>3} {kind}")
    print("\nthe ones that differ or stay open:")
    print("\n".join(lines) if lines else "  none")
    replay(fixed, design, state.trials_needed())


# Other designs, replayed on the fixed sweep's 8 seeds: the decisions are a function of
# the results, so this is what each design would have run (max 8, initial 3, step 2).
VARIANTS = (
    ("as run above", {}),
    ("stop_when: [gain, u_test]", {"stop_when": ("gain", "u_test")}),
    ("stop_when: [gain]", {"stop_when": ("gain",)}),
    ("margin: 0.02", {"margin": 0.02}),
    ("spending: pocock", {"spending": "pocock"}),
    ("[gain, u_test], pocock", {"stop_when": ("gain", "u_test"), "spending": "pocock"}),
)


def replay(fixed, design: Design, used_live: int) -> None:
    from dataclasses import replace

    from analysis.adaptive import adaptive_state

    print("\nother designs replayed on the fixed sweep's results (trials it would run):")
    print(f"{'design':>28} {'trials':>7} {'settled':>8} {'not settled':>12}")
    for name, change in VARIANTS:
        state = adaptive_state(fixed, replace(design, **change))
        settled = sum(o.status in ("decided", "equivalent") for o in state.outcomes)
        unsettled = sum(o.status == "max" for o in state.outcomes)
        print(f"{name:>28} {state.trials_needed():>7} {settled:>8} {unsettled:>12}")
    print(f"(the adaptive sweep itself needed {used_live} trials)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coverage-only", action="store_true")
    parser.add_argument("--n-sim", type=int, default=4000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    coverage_table(args.n_sim)
    if args.coverage_only:
        return
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        quickstart(args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            quickstart(Path(tmp))


if __name__ == "__main__":
    main()
