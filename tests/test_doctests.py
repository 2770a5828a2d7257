"""The examples in the packages' docstrings run, and say what they print.

Every module with a `>>>` line is collected from the source tree, so a new
example is run without anyone listing it. Examples that need downloads or
minutes carry `# doctest: +SKIP`.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hierarchies", "trainables", "sweeps", "analysis", "testing")
TOP_LEVEL = ("contracts.py", "fileio.py", "sequential.py")


def modules_with_examples() -> list[str]:
    files = [ROOT / name for name in TOP_LEVEL]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in files
        if ">>>" in path.read_text()
    ]


def test_examples_are_collected():
    # The collector itself can break (a moved package); then nothing would run.
    assert {"contracts", "hierarchies.core"} <= set(modules_with_examples())


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
