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
- the CPU spent beyond the trials' own (this process and everything it started:
  Ray's daemons, the workers' imports), and the wall-time floor it sets: all
  CPU over the cores. The overhead ratio cannot go below that floor's ratio
  without spending less CPU outside the trials;
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class TreeCpu:
    """CPU seconds of this process and all its descendants (Ray's daemons, workers), sampled.

    Ray's workers are not reaped by this process (RUSAGE_CHILDREN misses them),
    so a thread reads /proc every `interval_s` and keeps each descendant's last
    utime + stime; a process living less than one interval is missed (Linux only).
    The sampling thread's own CPU is left out of `seconds`.
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.last: dict[int, float] = {}
        self.own_s = 0.0  # CPU of the sampling itself
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _table() -> dict[int, tuple[int, float]]:
        """pid -> (parent pid, CPU seconds) of every process readable in /proc."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        return out

    def _sample(self) -> None:
        while True:
            table, tree = self._table(), {os.getpid()}
            grew = True
            while grew:  # descendants: parents already in the tree
                new = {pid for pid, (parent, _) in table.items() if parent in tree} - tree
                tree |= new
                grew = bool(new)
            self.last.update({pid: table[pid][1] for pid in tree if pid in table})
            self.own_s = time.thread_time()
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> TreeCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.last.values()) - self.own_s


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

    from sweeps.ledger.records import read_results
    from sweeps.runner import run_sweep
    from sweeps.spec import load_spec

    spec_path = Path(args.spec).resolve()
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="bench_sweep_"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # the default sqlite:///mlflow.db and storage land here
    spec = load_spec(spec_path, args.overrides, smoke=args.smoke)
    if any(workdir.iterdir()) and not args.keep:
        raise SystemExit(f"{workdir} is not empty")

    cpu_before = time.process_time()
    started, started_at = time.monotonic(), time.time()
    with TreeCpu() as tree_cpu:
        summary, plan = run_sweep(spec)
    wall = time.monotonic() - started
    cpu_all = tree_cpu.seconds - cpu_before  # this process's CPU before the sweep is not its
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
    fixed_cpu = cpu_all - cpu_s
    floor = (cpu_s + fixed_cpu) / (os.cpu_count() or 1)
    print(
        f"CPU beyond the trials':  {fixed_cpu:8.1f} s  (driver, MLflow, Ray's daemons, workers' "
        f"start-up; {cpu_all:.1f} s in all)"
    )
    print(
        f"  wall floor on {os.cpu_count()} cores: {floor:6.1f} s  (all CPU / cores: an overhead "
        f"ratio of at least {floor / ideal if ideal else float('nan'):.2f} with this CPU spent)"
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
