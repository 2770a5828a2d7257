"""The sweep subcommands: `granularity run | validate | status | sync SPEC [key=value ...]`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from contracts import SCRATCH
from sweeps.spec import MAX_TRIALS, Spec, load_spec


def _overrides_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let KEY=VALUE overrides follow options too (`run spec.yaml --smoke seeds=1`).

    argparse stops filling a `nargs="*"` positional at the first option; the
    KEY=VALUE words it leaves over are taken here as further overrides.
    """
    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):  # noqa: ANN001, ANN202
        namespace, extras = original(args, namespace)
        late = [e for e in extras if "=" in e and not e.startswith("-")]
        namespace.overrides = list(getattr(namespace, "overrides", None) or []) + late
        return namespace, [e for e in extras if e not in late]

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `run`, `validate`, `status` and `sync` to the `granularity` command."""

    def common(p: argparse.ArgumentParser) -> None:
        _overrides_anywhere(p)
        p.add_argument("spec", help="sweep spec (YAML), e.g. sweeps/quickstart.yaml")
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="dotted overrides, YAML values (pretrain.epochs=2 seeds=1)",
        )
        p.add_argument(
            "--smoke", action="store_true", help="apply the spec's `smoke:` overrides first"
        )
        p.add_argument(
            "--max-trials",
            type=_positive_int,
            default=None,
            metavar="N",
            help=f"refuse plans of more than N trials (default: the spec's max_trials, "
            f"{MAX_TRIALS:,}); counted before the plan is expanded",
        )

    run = subparsers.add_parser(
        "run",
        help="run, resume or extend a sweep",
        description="Run a sweep on Ray, logging to MLflow. Running again resumes: finished "
        "trials are skipped, failed and missing ones run. Exit code 1 when trials failed.",
    )
    common(run)
    run.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)",
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        help="Ray's own progress table and worker logs instead of the compact line",
    )
    run.add_argument(
        "--reuse-stale",
        action="store_true",
        help="keep done trials made by other code (another code version: edited training "
        "code or trainable module, other torch/timm, other data files) instead of rerunning them",
    )
    run.set_defaults(func=cmd_run)

    validate = subparsers.add_parser(
        "validate", help="check a spec and print its expanded plan (writes nothing)"
    )
    common(validate)
    validate.add_argument(
        "--estimate",
        action="store_true",
        help="also time a short probe per (dataset, backbone, device) and print the predicted "
        "compute (CPU- or GPU-hours) and wall time of the trials still to run",
    )
    validate.set_defaults(func=cmd_validate)

    status = subparsers.add_parser(
        "status", help="done / running / failed / missing trials per factor, with failure reasons"
    )
    common(status)
    status.set_defaults(func=cmd_status)

    sync = subparsers.add_parser(
        "sync",
        help="write results kept in the sweep's storage to MLflow (after a tracking outage)",
        description="Log every result (and failure) under <storage_path>/results/ that MLflow "
        "lacks, without duplicating what it has. `run` does this first anyway; use sync when "
        "the tracking server was unreachable during a sweep and you do not want to rerun.",
    )
    common(sync)
    sync.set_defaults(func=cmd_sync)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad one is a usage error: exit 2, one line)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _spec(args: argparse.Namespace, *, writes: bool = True) -> Spec:
    """The validated spec, its store and storage checked (as `run` checks them), nothing written.

    `writes=False` (status, which only reads): the storage folder need not be writable.
    """
    from sweeps.ledger.tracking_uri import check_locations, check_store

    cap = [f"max_trials={args.max_trials}"] if args.max_trials else []
    spec = load_spec(args.spec, [*args.overrides, *cap], smoke=args.smoke)
    if writes:
        check_locations(spec)
    else:
        check_store(spec.tracking.uri)
    return spec


@contextlib.contextmanager
def _tracking_errors(spec: Spec) -> Iterator[None]:
    """An unreachable or refusing tracking server is one line (exit 2), not MLflow's traceback."""
    try:
        yield
    except Exception as err:
        from sweeps.ledger.offline import refused_credentials, unreachable

        uri = spec.tracking.uri
        if refused_credentials(err):
            raise ConnectionError(
                f"tracking server {uri} refused the credentials; set MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD"
            ) from None
        if unreachable(uri, err) and not isinstance(err, ConnectionError | FileNotFoundError):
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise ConnectionError(f"tracking server {uri} unreachable ({first})") from None
        raise


def cmd_run(args: argparse.Namespace) -> int:
    from sweeps.runner import run_sweep

    spec = _spec(args)
    summary, plan = run_sweep(
        spec, address=args.address, verbose=args.verbose, reuse_stale=args.reuse_stale
    )
    print(summary.text(plan))
    if summary.tuned:
        print(f"search chose: {summary.tuned}")
    return 0 if summary.ok and not summary.pending_sync else 1


def _plan_with_tuning(spec: Spec) -> Any:
    """The plan as `run` would build it, with searched values read back from MLflow."""
    from sweeps.plan import build_plan, load_dataset
    from sweeps.status import open_tracker_readonly

    dataset = load_dataset(spec)
    plan = build_plan(spec, dataset=dataset, write=False)
    if spec.search is not None:
        from sweeps.search import tuned_from_params

        tracker = open_tracker_readonly(spec)
        params = tracker.parent_params() if tracker else {}
        tuned = tuned_from_params(spec, plan, params)
        if tuned:
            plan = build_plan(spec, dataset=dataset, tuned=tuned, write=False)
    return plan


def cmd_validate(args: argparse.Namespace) -> int:
    from sweeps.packing import make_packs
    from sweeps.runner import resolve_trainable
    from sweeps.status import trial_states

    spec = _spec(args)
    trainable = resolve_trainable(spec)  # unimportable: a spec error here, not at run time
    with _tracking_errors(spec):
        plan = _plan_with_tuning(spec)
        by_trial = trial_states(spec, plan)
    states = Counter(state for state, _ in by_trial.values())
    stale = _stale(plan)
    rerun = {k for k in stale if by_trial[k][0] == "done"}  # run reruns these
    summary = plan.summary()
    packs = make_packs(plan.trials, slots=spec.slots(), pack=spec.pack)
    print(f"spec {args.spec}: valid (sweep {spec.name!r}, spec hash {spec.spec_hash()})")
    print(f"  dataset {spec.dataset.name}, target {plan.target!r}")
    print(
        f"  {summary['trials']} trials = {summary['cells']} cells x {summary['seeds']} seeds; "
        f"{summary['pretrainings']} distinct pretrainings"
    )
    print(f"  per arm: {dict(summary['trials_per_arm'])}")
    print(
        f"  already done: {states['done']}"
        + (f" ({len(rerun)} stale: made by other code, rerun by run)" if rerun else "")
        + f", failed: {states['failed']}, to run: {summary['trials'] - states['done'] + len(rerun)}"
    )
    print(
        f"  on Ray: {len(packs)} Ray trial(s) (pack={spec.pack}), {spec.slots()} at a time, "
        f"{spec.resources.cpu:g} cpu / {spec.resources.gpu:g} gpu each"
        + (
            f" worker x {spec.resources.workers} workers (data-parallel, Ray Train)"
            if spec.resources.workers > 1
            else ""
        )
    )
    if spec.search is not None:
        print(
            f"  search: {', '.join(spec.search.parameters)} over {spec.search.n_trials} trials "
            f"({spec.search.scope})"
        )
    design = spec.design()
    if design is not None:
        first = summary["cells"] * design.initial
        print(
            f"  adaptive replicates: looks at {design.looks()} seeds per cell; round 1 runs "
            f"{first} trials, at most {summary['trials']} in all ({design.method()})"
        )
    if plan.trials:
        print(f"  code version: {plan.trials[0].config['code_version']}")
    print(f"  MLflow: {spec.tracking.uri}, experiment {spec.name!r}")
    print(f"  storage: {plan.storage}")
    for note in plan.notes:
        print(f"  note: {note}")
    if stale:
        print(f"  stale: {_stale_line(plan, stale)}")
    if getattr(args, "estimate", False):
        from sweeps.estimate import estimate

        to_run = [
            t for t in plan.trials if by_trial[t.trial_key][0] != "done" or t.trial_key in rerun
        ]
        print(estimate(spec, plan, trainable, trials=to_run).text(), flush=True)
    return 0


def _stale(plan: Any) -> dict[str, str | None]:
    """The plan's done trials made by other code (sweeps/code_version.py)."""
    from sweeps.code_version import stale_trials

    return stale_trials(plan, plan.storage)


def _stale_line(plan: Any, stale: dict[str, str | None]) -> str:
    from sweeps.code_version import stale_line

    return stale_line(stale, plan.trials[0].config["code_version"], reuse=False)


def cmd_status(args: argparse.Namespace) -> int:
    from sweeps.status import plan_factors, trial_states

    spec = _spec(args, writes=False)
    with _tracking_errors(spec):
        plan = _plan_with_tuning(spec)
        states = trial_states(spec, plan)
    columns = ("done", "running", "failed", "missing")
    total = Counter(state for state, _ in states.values())
    print(
        f"sweep {spec.name!r}: "
        + ", ".join(f"{total[c]} {c}" for c in columns)
        + f" of {len(plan.trials)}"
    )
    stale = _stale(plan)
    if stale:
        print(f"stale: {_stale_line(plan, stale)}")
    by_key = plan.by_key()
    for factor in plan_factors(plan):
        table: dict[str, Counter] = defaultdict(Counter)
        for key, (state, _) in states.items():
            value = by_key[key].factors().get(factor)
            table[SCRATCH if value is None else str(value)][state] += 1
        if len(table) < 2 and factor != "hierarchy":
            continue
        width = max(len(v) for v in table) + 2
        print(f"\nby {factor}:")
        print("  " + "".ljust(width) + "".join(c.rjust(9) for c in columns))
        for value, counts in table.items():
            print("  " + value.ljust(width) + "".join(str(counts[c]).rjust(9) for c in columns))
    reasons = Counter(reason or "unknown" for state, reason in states.values() if state == "failed")
    if reasons:
        print("\nfailure reasons:")
        for reason, n in reasons.most_common(20):
            print(f"  {n} x {reason[:300]}")
    return 0 if not total["failed"] else 1


def cmd_sync(args: argparse.Namespace) -> int:
    from sweeps.ledger.sync import sync_storage

    spec = _spec(args)
    with _tracking_errors(spec):
        synced, total = sync_storage(spec)
    print(
        f"sweep {spec.name!r}: {synced} trial(s) written to MLflow ({spec.tracking.uri}); "
        f"{total - synced} of {total} stored record(s) were there already"
    )
    return 0


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse `argv` with `parser` and run the chosen subcommand; its return value is the exit code.

    Each subcommand sets `func(args) -> int`. Errors a user can fix (ValueError and
    its subclasses such as SpecError, missing files, the registries' "Unknown ..."
    RuntimeErrors, an unreachable --address) are printed as one line, exit code 2,
    without a traceback.
    """
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, LookupError, RuntimeError, ConnectionError) as err:
        print(f"granularity {args.command}: error: {err}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sweeps.commands ...`: the sweep subcommands (run, validate, status, sync) alone.

    The whole `granularity` command is `sweeps.cli.main`; this one needs no other package's CLI.
    """
    parser = argparse.ArgumentParser(prog="granularity", description="Sweeps: run and inspect.")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run_parsed(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
