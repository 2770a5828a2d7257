"""The plain Ray Tune anchor: the same trials as a sweep, run the way users would otherwise.

One Tune trial per trial config (`tune.grid_search` over the plan's configs),
`MLflowLoggerCallback` logging each to a fresh SQLite store, no shared
pretraining (each trial gets its own pretrain store, so nothing is reused).
Against it, `granularity run` on the same spec from scratch. Prints both wall
times and their ratio.

    python bench/bench_anchor.py                                  # quickstart subset (below)
    python bench/bench_anchor.py sweeps/quickstart.yaml seeds=2   # 104 trials (~7 min)
    python bench/bench_anchor.py --noop 200                       # 200 no-op trials (orchestration)

Default subset: the quickstart at seeds=1 and data fraction 0.25 (26 trials),
so the anchor finishes in a couple of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

DEFAULT_OVERRIDES = ["seeds=1", "factors.data_fractions=[0.25]"]


def _spec(args: argparse.Namespace, workdir: Path):
    from sweeps.spec import load_spec, parse_spec

    if args.noop:
        import bench_scale

        return parse_spec(bench_scale.raw_spec(args.noop, workdir))
    overrides = args.overrides or DEFAULT_OVERRIDES
    return load_spec(args.spec, [*overrides, f"storage_path={workdir / 'store'}"])


def run_anchor(spec, trainable, workdir: Path, limit: int | None = None) -> dict[str, float]:
    """Every trial of `spec`'s plan as its own Ray Tune trial with MLflowLoggerCallback."""
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from sweeps.plan import build_plan

    storage = workdir / "anchor"
    plan = build_plan(spec, write=True, storage=storage)
    configs = [t.config for t in plan.trials][:limit]
    for i, config in enumerate(configs):  # no shared pretraining: a store per trial
        config["pretrain_store"] = str(storage / "pretrained" / str(i))

    def trial(params: dict) -> None:
        config = params["trial"]

        def report(metrics: dict, step: int) -> None:
            tune.report({k: v for k, v in metrics.items() if isinstance(v, int | float)})

        result = trainable(dict(config), report)
        tune.report({k: v for k, v in result.items() if isinstance(v, int | float)})

    module = sys.modules.get(getattr(trainable, "__module__", ""))
    if module is not None and "site-packages" not in (getattr(module, "__file__", "") or ""):
        ray.cloudpickle.register_pickle_by_value(module)  # a loose module (bench/noop.py)
    started = time.monotonic()
    ray.init(num_cpus=spec.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": spec.resources.cpu}),
            param_space={"trial": tune.grid_search(configs)},
            run_config=tune.RunConfig(
                name="anchor",
                storage_path=str(storage / "ray"),
                callbacks=[
                    MLflowLoggerCallback(
                        tracking_uri=f"sqlite:///{workdir / 'anchor.db'}",
                        experiment_name="anchor",
                        save_artifact=False,
                    )
                ],
                verbose=0,
            ),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    wall = time.monotonic() - started
    errors = sum(1 for r in results if r.error)
    print(f"anchor (plain Ray Tune): {len(configs)} trials, {errors} errors, {wall:.1f} s")
    return {"trials": len(configs), "wall": wall, "errors": errors}


def run_ours(spec, workdir: Path) -> dict[str, float]:
    from sweeps.runner import run_sweep

    spec = spec.model_copy(
        update={
            "tracking": spec.tracking.model_copy(update={"uri": f"sqlite:///{workdir}/ours.db"})
        }
    )
    started = time.monotonic()
    summary, _ = run_sweep(spec)
    wall = time.monotonic() - started
    print(f"granularity run: {summary.planned} trials, {len(summary.failed)} failed, {wall:.1f} s")
    return {"trials": summary.planned, "wall": wall}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(BENCH.parent / "sweeps" / "quickstart.yaml"))
    parser.add_argument(
        "overrides", nargs="*", help=f"dotted overrides (default {DEFAULT_OVERRIDES})"
    )
    parser.add_argument(
        "--noop",
        type=int,
        default=0,
        help="about this many no-op trials (a multiple of 90) instead of a spec",
    )
    args = parser.parse_args(argv)
    if "=" in args.spec and not Path(args.spec).exists():
        args.overrides.insert(0, args.spec)
        args.spec = str(BENCH.parent / "sweeps" / "quickstart.yaml")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = Path(tempfile.mkdtemp(prefix="bench_anchor_"))
    spec = _spec(args, workdir)
    from sweeps.runner import resolve_trainable

    trainable = resolve_trainable(spec)
    ours = run_ours(spec, workdir)
    anchor = run_anchor(spec, trainable, workdir)
    ratio = anchor["wall"] / ours["wall"] if ours["wall"] else math.nan
    print(f"anchor / ours: {ratio:.1f}x  ({anchor['trials']} trials, in {workdir})")
    return {
        "ours": ours["wall"],
        "anchor": anchor["wall"],
        "trials": anchor["trials"],
        "ratio": ratio,
    }


if __name__ == "__main__":
    main()
