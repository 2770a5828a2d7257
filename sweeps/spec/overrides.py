"""Dotted overrides (`pretrain.epochs=2`) applied to a raw spec dict, checked against the schema."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel

from sweeps.spec import bounded_yaml
from sweeps.spec.errors import SpecError
from sweeps.spec.schema import Spec


def _model_at(model: type[BaseModel], key: str) -> tuple[type[BaseModel] | None, bool]:
    """(sub-model class behind field `key`, whether that field is a free-form dict)."""
    annotation = model.model_fields[key].annotation
    candidates = [annotation, *get_args(annotation)]
    for cand in candidates:
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand, False
    free = any(get_origin(c) is dict or c is dict for c in candidates)
    return None, free


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides (value parsed as YAML) to a raw spec dict.

    Unknown keys raise SpecError naming the key and what is accepted there.
    Keys inside free-form mappings (`dataset.options.x`, `smoke.x`) are accepted.
    """
    raw = json.loads(json.dumps(raw))  # a deep copy we may mutate
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"override {item!r}: expected key=value, e.g. pretrain.epochs=2")
            continue
        try:
            value = bounded_yaml.safe_load(text, f"override {key!r}") if text.strip() else ""
        except bounded_yaml.YamlLimitError as err:
            problems.append(str(err))
            continue
        except yaml.YAMLError as err:
            problems.append(f"override {item!r}: value is not valid YAML ({err})")
            continue
        parts = key.split(".")
        model: type[BaseModel] | None = Spec
        node = raw
        ok = True
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if model is not None:
                if part not in model.model_fields:
                    where = ".".join(parts[:depth]) or "the top level"
                    accepted = ", ".join(sorted(model.model_fields))
                    problems.append(
                        f"override {item!r}: unknown key {part!r} under {where} "
                        f"(accepted: {accepted})"
                    )
                    ok = False
                    break
                sub, free = _model_at(model, part)
                if not last and sub is None and not free:
                    problems.append(
                        f"override {item!r}: {'.'.join(parts[: depth + 1])} is a single value, "
                        "it has no sub-keys"
                    )
                    ok = False
                    break
                model = sub
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
        if not ok:
            continue
    if problems:
        raise SpecError(problems, source="overrides")
    return raw
