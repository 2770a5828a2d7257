"""Orchestration overhead of a sweep (default: the quickstart) on this machine.

Runs the spec from scratch in a temporary directory (fresh MLflow store and
storage) and prints:

- wall time of `granularity run`, and the sum of the trials' own times (each
  logical trial's wall time inside its worker);
- overhead ratio = wall / (sum of trial times / parallel slots): 1.0 would be
  a perfectly packed machine with free orchestration; the overhead split into
  start-up (to the first trial), idle slots while trials run, and shutdown;
- the trials' own CPU time: on a small machine the driver (MLflow writes), Ray's
  daemons and the trials share the cores, so a trial's wall time includes
  waiting for one;
- pretrainings executed against trials (shared label functions run once), and
  what loading a stored pretraining costs against running that trial's
  finetune alone.

Usage:
    python bench/bench_sweep.py                        # sweeps/quickstart.yaml
    python bench/bench_sweep.py seeds=24               # the quickstart, 3x the trials
    python bench/bench_sweep.py sweeps/theory.yaml seeds=2 --keep /tmp/bench
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "sweeps" / "quickstart.yaml"))
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. seeds=1")
    parser.add_argument("--smoke", action="store_true", help="apply the spec's smoke overrides")
    parser.add_argument("--keep", default=None, help="run in this directory and keep it")
    args = parser.parse_args(argv)
    if "=" in args.spec and not Path(args.spec).exists():  # `bench_sweep.py seeds=16`
        args.overrides.insert(0, args.spec)
        args.spec = str(ROOT / "sweeps" / "quickstart.yaml")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from sweeps.results import read_results
    from sweeps.runner import run_sweep
    from sweeps.spec import load_spec

    spec_path = Path(args.spec).resolve()
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="bench_sweep_"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # the default sqlite:///mlflow.db and storage land here
    spec = load_spec(spec_path, args.overrides, smoke=args.smoke)
    if any(workdir.iterdir()) and not args.keep:
        raise SystemExit(f"{workdir} is not empty")

    started, started_at = time.monotonic(), time.time()
    summary, plan = run_sweep(spec)
    wall = time.monotonic() - started
    records = read_results(plan.storage)
    if not records:
        raise SystemExit(f"no trial finished ({len(summary.failed)} failed): nothing to measure")
    trial_s = sum(r.get("wall_s") or 0.0 for r in records.values())
    cpu_s = sum(r.get("cpu_s") or 0.0 for r in records.values())
    first = min(r["finished_at"] - r["wall_s"] for r in records.values()) - started_at
    last = max(r["finished_at"] for r in records.values()) - started_at
    ideal = trial_s / summary.slots if summary.slots else float("nan")
    print(
        f"spec {spec_path.name}: {summary.planned} trials, {summary.packs} Ray trial(s), "
        f"{summary.slots} parallel slots, in {workdir}"
    )
    print(f"wall time:               {wall:8.1f} s")
    print(
        f"sum of trial times:      {trial_s:8.1f} s  (ideal wall {ideal:.1f} s on {summary.slots} slots)"
    )
    print(
        f"overhead ratio:          {wall / ideal if ideal else float('nan'):8.2f}  (wall / ideal)"
    )
    print(f"overhead:                {wall - ideal:8.1f} s  (startup, MLflow, Ray, idle slots)")
    print(f"  start to first trial:  {first:8.1f} s  (plan, MLflow store, Ray, workers)")
    print(
        f"  trials:                {last - first:8.1f} s  "
        f"(slots busy {trial_s / summary.slots / (last - first):.0%})"
    )
    print(f"  last trial to return:  {wall - last:8.1f} s  (Ray shutdown)")
    print(
        f"trials' own CPU time:    {cpu_s:8.1f} s  ({1 - cpu_s / trial_s:.0%} of their wall time "
        "they waited for a core: driver, MLflow, Ray daemons)"
    )
    print(
        f"pretrainings executed:   {summary.pretrainings_executed:8d}  "
        f"of {summary.planned - sum(t.is_scratch for t in plan.trials)} pretrained trials "
        f"({summary.pretrainings_planned} distinct pretrain keys)"
    )
    reused = [r for r in records.values() if r["result"].get("pretrain_reused", 0.0) >= 0.5]
    pretrained = [
        r
        for r in records.values()
        if r["result"].get("pretrain_reused", 0.0) < 0.5 and r["config"]["hierarchy"] != "scratch"
    ]
    if reused and pretrained:
        # What a reusing trial costs beyond "its finetune run once": against the
        # part of a pretraining trial outside its pretraining.
        rest = sum(r["wall_s"] - r["result"].get("time/pretrain_s", 0.0) for r in pretrained)
        extra = sum(r["wall_s"] for r in reused) - len(reused) * rest / len(pretrained)
        print(
            f"shared pretraining:      {extra / trial_s:+8.1%}  of trial time beyond pretrainings + "
            f"finetunes run once each ({len(reused)} trials loaded a stored pretraining)"
        )
    print(f"failed:                  {len(summary.failed):8d}")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
