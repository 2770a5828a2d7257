"""Entry points: a YAML file (or a shipped spec by name) -> a validated `Spec`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sweeps.spec import bounded_yaml
from sweeps.spec.errors import SpecError, validation_problems
from sweeps.spec.overrides import apply_overrides
from sweeps.spec.schema import Spec


def parse_spec(
    raw: Any, *, overrides: Sequence[str] = (), smoke: bool = False, source: str = "spec"
) -> Spec:
    """Validate a raw (YAML-loaded) spec after applying `smoke` settings then `overrides`.

    Without `smoke`, the `smoke:` block is checked all the same (its keys as
    overrides are, then the spec it would make), so a typo there is an error
    on every run, not only on the first `--smoke` one.
    """
    if not isinstance(raw, dict):
        raise SpecError([f"(top level): expected a mapping of fields, got {type(raw).__name__}"])
    smoke_block = raw.get("smoke") or {}
    if not isinstance(smoke_block, dict):
        raise SpecError([f"smoke: expected a mapping of dotted overrides, got {smoke_block!r}"])
    smoke_items = [f"{k}={json.dumps(v)}" for k, v in smoke_block.items()]
    smoked = _smoke_errors(lambda: apply_overrides(raw, smoke_items), source)
    spec = _validate(apply_overrides(smoked if smoke else raw, overrides), source)
    if smoke_items and not smoke:
        _smoke_errors(lambda: _validate(apply_overrides(smoked, overrides), source), source)
    return spec


def _validate(raw: dict[str, Any], source: str) -> Spec:
    try:
        return Spec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(validation_problems(err), source=source) from None


def _smoke_errors(check: Callable[[], Any], source: str) -> Any:
    """`check()`, its spec errors re-raised as the smoke block's."""
    try:
        return check()
    except SpecError as err:
        raise SpecError([f"smoke: {p}" for p in err.problems], source=source) from None


def shipped_specs() -> dict[str, Path]:
    """The specs installed with the package (sweeps/*.yaml), by name: `quickstart`, `glyphs` ..."""
    from importlib.resources import files

    folder = files("sweeps")
    return {
        entry.name.removesuffix(".yaml"): Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    }


def resolve_spec_path(path: str | Path) -> Path:
    """A spec file: `path` itself, else the shipped spec of that name (`granularity run quickstart`)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    name = str(path).removesuffix(".yaml")
    shipped = shipped_specs()
    if "/" not in name and name in shipped:
        return shipped[name]
    raise FileNotFoundError(
        f"spec file {str(path)!r} does not exist, and no shipped spec has that name "
        f"(shipped: {', '.join(sorted(shipped))})"
    )


def load_spec(path: str | Path, overrides: Sequence[str] = (), *, smoke: bool = False) -> Spec:
    """Read a YAML spec (safe_load, bounded: sweeps/spec/bounded_yaml.py) and validate it.

    SpecError lists every problem.

    `path` is a file, or the name of a shipped spec (`quickstart`, `glyphs` ...).
    """
    path = resolve_spec_path(path)
    try:
        bounded_yaml.check_size(path.stat().st_size, f"spec file {path}")
        raw = bounded_yaml.safe_load(path.read_text(), f"spec file {path}")
    except bounded_yaml.YamlLimitError as err:
        raise SpecError([str(err)], source=f"spec {path}") from None
    except yaml.YAMLError as err:
        raise SpecError([f"{path}: not valid YAML: {err}"], source=f"spec {path}") from None
    return parse_spec(raw, overrides=overrides, smoke=smoke, source=f"spec {path}")
