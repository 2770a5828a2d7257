"""Entry points: a YAML file (or a shipped spec by name) -> a validated `Spec`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sweeps.spec.errors import SpecError, validation_problems
from sweeps.spec.overrides import apply_overrides
from sweeps.spec.schema import Spec


def parse_spec(
    raw: Any, *, overrides: Sequence[str] = (), smoke: bool = False, source: str = "spec"
) -> Spec:
    """Validate a raw (YAML-loaded) spec after applying `smoke` settings then `overrides`."""
    if not isinstance(raw, dict):
        raise SpecError([f"(top level): expected a mapping of fields, got {type(raw).__name__}"])
    if smoke:
        smoke_overrides = raw.get("smoke") or {}
        if not isinstance(smoke_overrides, dict):
            raise SpecError(
                [f"smoke: expected a mapping of dotted overrides, got {smoke_overrides!r}"]
            )
        raw = apply_overrides(raw, [f"{k}={json.dumps(v)}" for k, v in smoke_overrides.items()])
    raw = apply_overrides(raw, overrides)
    try:
        return Spec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(validation_problems(err), source=source) from None


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
    """Read a YAML spec (safe_load) and validate it; SpecError lists every problem.

    `path` is a file, or the name of a shipped spec (`quickstart`, `glyphs` ...).
    """
    path = resolve_spec_path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError([f"{path}: not valid YAML: {err}"], source=f"spec {path}") from None
    return parse_spec(raw, overrides=overrides, smoke=smoke, source=f"spec {path}")
