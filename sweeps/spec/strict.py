"""The conventions every spec section follows: the strict base model and its helpers.

Unknown keys are errors, numbers are finite, a YAML boolean is never a number;
`repeated_values` names the values a list repeats (for "x repeat: [...]" messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError


def _admits_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    if get_origin(annotation) is dict or annotation is dict:
        return True  # free-form mappings (options, smoke)
    return any(_admits_bool(arg) for arg in get_args(annotation) if get_origin(arg) is not list)


class StrictSection(BaseModel):
    """A spec section: unknown keys are errors (reported with the accepted ones).

    Numbers are finite (no .nan / .inf) and a YAML boolean is never taken for a
    number (`seeds: true` is an error, not 1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            info = cls.model_fields.get(name) if isinstance(name, str) else None
            if info is None or _admits_bool(info.annotation):
                continue
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, bool):
                    where = f"{name}[{i}]" if isinstance(value, list) else name
                    raise PydanticCustomError(
                        "not_bool",
                        "{where}: got the boolean {value}, expected a number or a name",
                        {"where": where, "value": str(item).lower()},
                    )
        return data


def repeated_values(values: Sequence[Any]) -> list[Any]:
    """The values that occur more than once, in first-seen order."""
    seen: list[Any] = []
    out: list[Any] = []
    for v in values:
        if v in seen and v not in out:
            out.append(v)
        seen.append(v)
    return out
