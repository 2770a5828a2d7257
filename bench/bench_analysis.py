"""Benchmark: load and analyse 10,000 trial runs from a SQLite MLflow store.

Generates the store (bulk SQL inserts following the MLflow contract: one parent
run, 10,000 child runs with params, tags and final metrics), then prints the
time to load it with each reader and to run the estimators and the report.

    python bench/bench_analysis.py              # 10,000 runs, ~1 min in all
    python bench/bench_analysis.py --runs 2000 --skip-search
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from analysis import estimators
from analysis.load import load_runs
from analysis.report import write_report
from testing.simulate import simulate_sweep, u_curve, write_sweep


def build_table(n_runs: int):
    """A sweep of about ``n_runs`` trials: 4 kinds x 8 levels x 5 fractions x seeds, plus scratch."""
    kinds = {"manual": 0.0, "cluster_within": 0.005, "cluster_global": 0.01, "random": 0.02}
    fractions = (0.1, 0.2, 0.3, 0.5, 1.0)
    per_seed = (len(kinds) * 8 + 1) * len(fractions)
    seeds = max(1, math.ceil(n_runs / per_seed))
    df = simulate_sweep(
        curve=u_curve(size_exponent=0.5),
        kinds=kinds,
        data_fractions=fractions,
        seeds=seeds,
        random_state=0,
    )
    return df.head(n_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument(
        "--skip-search", action="store_true", help="skip the slow search_runs reader"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        df = build_table(args.runs)
        t0 = time.perf_counter()
        write_sweep(df, "bench", uri, bulk=True)
        print(f"write {len(df)} runs (bulk SQL):      {time.perf_counter() - t0:7.2f} s")
        t0 = time.perf_counter()
        loaded = load_runs("bench", uri, method="sql")
        print(f"load  {len(loaded)} runs, sql reader:     {time.perf_counter() - t0:7.2f} s")
        if not args.skip_search:
            t0 = time.perf_counter()
            searched = load_runs("bench", uri, method="search")
            print(f"load  {len(searched)} runs, search_runs:  {time.perf_counter() - t0:7.2f} s")
            same = loaded.equals(searched)
            print(f"readers give identical frames:       {same}")
        t0 = time.perf_counter()
        estimators.UCurve().fit(loaded)
        estimators.SizeGranularity().fit(loaded)
        estimators.BaselineGain().fit(loaded)
        estimators.HierarchyComparison().fit(loaded)
        estimators.AlignmentStudy().fit(loaded)
        print(f"analyse (all estimators):            {time.perf_counter() - t0:7.2f} s")
        t0 = time.perf_counter()
        write_report("bench", uri, Path(tmp) / "report")
        print(f"report (load + analyse + plots + artifacts): {time.perf_counter() - t0:7.2f} s")


if __name__ == "__main__":
    main()
