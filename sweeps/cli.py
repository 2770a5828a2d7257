"""The `granularity` command: the composition root that wires every package's subcommands.

The one module of the packages allowed to import another package's CLI
(`analysis.cli` from `sweeps`: tests/test_imports.py names it); the imports are
static, so the import test sees every edge.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from analysis.cli import register as register_analysis
from hierarchies.cli import register as register_hierarchies
from sweeps.commands import register as register_sweeps
from sweeps.commands import run_parsed

# Each package owns its subcommands; this table wires them in (the order of `--help`).
REGISTRARS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    register_hierarchies,
    register_sweeps,
    register_analysis,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="granularity",
        description="Sweeps over pretraining label granularity: hierarchies, runs, analysis.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chosen subcommand; its return value is the exit code."""
    return run_parsed(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
