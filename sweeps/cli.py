"""The `granularity` command: one subcommand per job, each registered by its package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="granularity",
        description="Sweeps over pretraining label granularity: hierarchies, runs, analysis.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each package owns its subcommands; the CLI only wires them together.
    from hierarchies.cli import register as register_hierarchy

    register_hierarchy(subparsers)
    for module_name in ("sweeps.commands", "analysis.cli"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chosen subcommand; its return value is the exit code.

    Each subcommand sets `func(args) -> int`. Errors a user can fix (ValueError and
    its subclasses such as SpecError, missing files, the registries' "Unknown ..."
    RuntimeErrors, an unreachable --address) are printed as one line, exit code 2,
    without a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, LookupError, RuntimeError, ConnectionError) as err:
        print(f"granularity {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
