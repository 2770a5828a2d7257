"""`SpecError` and its text: one line per problem (field path, bad value, what is accepted)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from sweeps.spec.schema import Spec


class SpecError(ValueError):
    """A sweep spec (or an override of it) is invalid; one line per problem."""

    def __init__(self, problems: Sequence[str], *, source: str = "spec") -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:  # the common case: one line
            super().__init__(f"invalid {source}: {self.problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {source} ({len(self.problems)} problem(s)):\n{lines}")


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[", "list[", "int", "str")) or part in (
            "tagged-union",
        ):
            continue  # pydantic's union-branch markers are noise to a user
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def validation_problems(err: ValidationError) -> list[str]:
    problems: dict[str, str] = {}
    for item in err.errors(include_url=False):
        path = _path(item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            text = f"{path}: required field is missing"
        elif item["type"] in ("not_bool", "not_json", "spec_rule"):
            where = path if path != "(top level)" else ""
            text = f"{where}.{msg}" if where and not msg.startswith(where) else msg
        elif item["type"] == "extra_forbidden":
            model = _model_for_loc(item["loc"][:-1])
            accepted = ", ".join(sorted(model.model_fields)) if model else "see the docs"
            where = _path(item["loc"][:-1])
            text = f"{path}: unknown key {item['loc'][-1]!r} under {where} (accepted: {accepted})"
        elif repr(item.get("input")) in msg:  # the message names the value already
            text = f"{path}: {msg}"
        else:
            text = f"{path}: {msg} (got {item.get('input')!r})"
        # A union reports each branch; keep one line per field path.
        problems.setdefault(path, text)
    return list(problems.values())


def _model_for_loc(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The spec section (model class) at a pydantic error location."""
    model: type[BaseModel] | None = Spec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if part not in model.model_fields:
            continue  # a union-branch marker
        model = _submodel(model.model_fields[part].annotation)
    return model


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None
