"""Orchestration at scale: a no-op trainable swept over thousands of trials.

The trainable (bench/noop.py) does no work, so the figures are the
orchestrator's own cost per trial (plan -> Ray -> MLflow -> result files):

- trials/s end to end (wall of `run_sweep`, fresh store and storage) and
  the driver's CPU time per trial;
- the driver's peak memory (max RSS);
- `granularity validate` of a plan of `--validate-trials` trials.

    python bench/bench_scale.py                       # 10,000 trials
    python bench/bench_scale.py --trials 2000 --profile /tmp/scale.prof
    python bench/bench_scale.py --trials 0 --validate-trials 100000
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

FRACTIONS = [round(0.1 * i, 1) for i in range(1, 11)]
PER_SEED = (2 * 4 + 1) * len(FRACTIONS)  # (manual, random) x 4 levels + scratch, x fractions


def raw_spec(trials: int, workdir: Path, *, hierarchy_seed: str | int = "replicate") -> dict:
    """A spec over the no-op trainable with about `trials` trials (a multiple of 90)."""
    from sweeps.spec import Spec

    cap = {"max_trials": trials + PER_SEED} if "max_trials" in Spec.model_fields else {}
    return {
        **cap,
        "name": "scale",
        "dataset": {"name": "noop:noop_dataset"},
        "trainable": "noop:train",
        "target": "coarse",
        "factors": {
            "hierarchies": ["manual", "random", "scratch"],
            "levels": "all",
            "data_fractions": FRACTIONS,
        },
        "seeds": max(1, math.ceil(trials / PER_SEED)),
        "hierarchy_seed": hierarchy_seed,
        "pretrain": {"epochs": 1},
        "finetune": {"epochs": 1},
        "retries": 0,
        "storage_path": str(workdir / "store"),
        "tracking": {"uri": f"sqlite:///{workdir}/mlflow.db"},
    }


def run_scale(trials: int, profile: str | None = None) -> dict[str, float]:
    """Run the no-op sweep from scratch; its wall, trials/s, driver CPU/trial and peak RSS."""
    from sweeps.runner import run_sweep
    from sweeps.spec import parse_spec

    workdir = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    spec = parse_spec(raw_spec(trials, workdir))
    cpu0 = time.process_time()
    started = time.monotonic()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        summary, plan = profiler.runcall(run_sweep, spec)
        profiler.dump_stats(profile)
    else:
        summary, plan = run_sweep(spec)
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = summary.planned
    print(
        f"no-op sweep: {n} trials, {summary.packs} Ray trial(s), {summary.slots} slots, "
        f"{len(summary.failed)} failed, in {workdir}"
    )
    print(f"wall time:                {wall:8.1f} s")
    print(f"throughput:               {n / wall:8.1f} trials/s")
    print(f"driver CPU per trial:     {1000 * cpu / n:8.2f} ms")
    print(f"driver peak memory:       {rss_mb:8.0f} MB")
    return {"trials": n, "wall": wall, "rate": n / wall, "cpu_ms": 1000 * cpu / n, "rss": rss_mb}


def run_validate(trials: int) -> float:
    """Seconds `granularity validate` takes on a plan of about `trials` trials (a subprocess)."""
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.yaml"
        path.write_text(yaml.safe_dump(raw_spec(trials, Path(tmp))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(BENCH.parent)])}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "sweeps.commands", "validate", str(path)],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - started
    if done.returncode:
        raise RuntimeError(f"validate failed: {done.stderr.strip()[-400:]}")
    lines = [line for line in done.stdout.splitlines() if "trials =" in line]
    print(f"validate {lines[0].strip() if lines else ''}: {seconds:.1f} s")
    # The largest child so far: the plan's memory, most of what a driver holds for it.
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"validate peak memory:     {child_mb:8.0f} MB")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000, help="0 skips the sweep")
    parser.add_argument("--validate-trials", type=int, default=0, help="0 skips validate")
    parser.add_argument("--profile", default=None, help="write the driver's cProfile here")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.validate_trials:
        run_validate(args.validate_trials)
    if args.trials:
        run_scale(args.trials, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
