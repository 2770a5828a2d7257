"""Bad values of this round's spec fields, generated: every one ends in exit 2, one line, nothing made.

As tests/test_spec_properties.py does for the older fields, here for
`replicates`, `pretrain/finetune.steps`, `factors.finetune_modes`,
`factors.dataset_options` and an arm's `leaf_level`, and through the CLI: for each field a strategy generates invalid values; `granularity
validate` and `granularity run` must each exit 2 with one line on stderr that
names the field (a line per entry when several entries of a list are bad),
create no file or folder, and never start anything.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeps import commands

# Deterministic examples (CI sees the same inputs every run); each runs the CLI twice.
CLI_PROPS = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def base_spec(folder: Path) -> dict:
    return {
        "name": "round-props",
        "dataset": {"name": "sweeps_fake:fake_dataset"},
        "trainable": "sweeps_fake:train",
        "target": "coarse",
        "factors": {"hierarchies": ["manual", "random", "scratch"], "levels": ["mid", "leaf"]},
        "seeds": 3,
        "pretrain": {"epochs": 1},
        "finetune": {"epochs": 1},
        "storage_path": str(folder / "store"),
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}"},
    }


def set_path(raw: dict, dotted: str, value: object) -> dict:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return raw


def not_an_int(min_value: int) -> st.SearchStrategy:
    """Values an integer field >= min_value refuses: smaller integers, other types."""
    return (
        st.integers(max_value=min_value - 1, min_value=-(10**9))
        | st.booleans()
        | st.text(min_size=1, max_size=6).filter(lambda s: not s.strip().lstrip("-").isdigit())
        | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f))
        | st.lists(st.integers(), max_size=2)
    )


def other_than(accepted: tuple[str, ...]) -> st.SearchStrategy:
    return st.text(min_size=1, max_size=10).filter(lambda s: s not in accepted) | st.integers()


FAKE_LEVELS = ("coarse", "mid", "fine", "leaf")  # tests/sweeps_fake.py's hierarchy
option_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


def at(dotted: str, **extra: object):
    """A case's edit: the `extra` fields (dotted: value) first, then the bad value at `dotted`."""

    def apply(raw: dict, value: object) -> dict:
        for key, fixed in extra.items():
            set_path(raw, key.replace("__", "."), fixed)
        return set_path(raw, dotted, value)

    return apply


def arm_with(kind: str, position: int):
    """A case's edit: factors.hierarchies with a `kind` arm at `position` given the bad leaf_level."""

    def apply(raw: dict, value: object) -> dict:
        arms: list = ["manual", "scratch"]
        arms.insert(position, {"kind": kind, "leaf_level": value})
        return set_path(raw, "factors.hierarchies", arms)

    return apply


def crossed_and_fixed(raw: dict, value: object) -> dict:
    """The same dataset option crossed and fixed in dataset.options."""
    name, values = value
    set_path(raw, "dataset.options", {name: values[0]})
    return set_path(raw, "factors.dataset_options", {name: values})


# (case, edit(raw, value), strategy of invalid values, what the line names)
CASES = [
    ("replicates.initial", at("replicates.initial"), not_an_int(2), "replicates.initial"),
    (
        "replicates.step",
        at("replicates.step", replicates__initial=2),
        not_an_int(1),
        "replicates.step",
    ),
    (
        "replicates.max",
        at("replicates.max", replicates__initial=2),
        not_an_int(2),
        "replicates.max",
    ),
    (
        "replicates.alpha",
        at("replicates.alpha"),
        st.floats(max_value=0.0, allow_nan=False)
        | st.floats(min_value=1.0, allow_nan=False)
        | st.text(min_size=1, max_size=4).filter(
            lambda s: not s.strip().replace(".", "").isdigit()
        ),
        "replicates.alpha",
    ),
    (
        "replicates.spending",
        at("replicates.spending"),
        other_than(("obrien_fleming", "pocock")),
        "replicates.spending",
    ),
    (
        "replicates.stop_when",
        at("replicates.stop_when"),
        st.just([])
        | st.lists(
            other_than(("gain", "hierarchy", "u_test", "half_width")), min_size=1, max_size=3
        ),
        "replicates.stop_when",
    ),
    (
        "replicates.margin",
        at("replicates.margin"),
        st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
        "replicates.margin",
    ),
    (
        "replicates with crossed factors",
        at("replicates", factors__finetune_modes=["linear", "full"], finetune={"epochs": 1}),
        st.builds(dict, initial=st.integers(2, 3)),
        "replicates: adaptive replicates",
    ),
    ("pretrain.steps", at("pretrain.steps", pretrain={}), not_an_int(1), "pretrain.steps"),
    (
        "steps with epochs",
        at("finetune.steps"),
        st.integers(min_value=1, max_value=10**6),
        "finetune.steps",
    ),
    (
        "factors.finetune_modes",
        at("factors.finetune_modes", finetune={"epochs": 1}),
        st.just([])
        | st.lists(other_than(("linear", "full")), min_size=1, max_size=3)
        | st.sampled_from(["linear", "full"]).map(lambda mode: [mode, mode])
        | st.integers()
        | st.dictionaries(option_names, st.integers(), min_size=1, max_size=2),
        "factors.finetune_modes",
    ),
    (
        "finetune_modes with finetune.mode",
        at("factors.finetune_modes", finetune={"epochs": 1, "mode": "linear"}),
        st.lists(st.sampled_from(["linear", "full"]), min_size=1, max_size=2, unique=True),
        "finetune.mode: set together with factors.finetune_modes",
    ),
    (
        "factors.dataset_options",
        at("factors.dataset_options"),
        st.dictionaries(option_names, st.just([]), min_size=1, max_size=3)
        | st.dictionaries(option_names, st.integers().map(lambda v: [v, v]), min_size=1, max_size=3)
        | st.lists(st.integers(), max_size=3)
        | st.integers()
        | st.text(max_size=5),
        "factors.dataset_options",
    ),
    (
        "dataset option crossed and fixed",
        crossed_and_fixed,
        st.tuples(option_names, st.lists(st.integers(), min_size=1, max_size=3, unique=True)),
        "also set in dataset.options",
    ),
    (
        "leaf_level of a derived arm",
        arm_with("random", 1),
        st.text(min_size=1, max_size=8).filter(
            lambda s: s not in FAKE_LEVELS and not s.strip().lstrip("+-").isdigit()
        )
        | st.integers(min_value=4, max_value=10**6)
        | st.integers(min_value=-(10**6), max_value=-5)
        | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
        "factors.hierarchies[1].leaf_level",
    ),
    (
        "leaf_level of the manual arm",
        arm_with("manual", 0),
        st.sampled_from(FAKE_LEVELS) | st.integers(0, 3),
        "factors.hierarchies[0]: leaf_level applies only to kind",
    ),
]


def _refused(raw: dict, named: str) -> None:
    """validate and run: exit 2, one line naming `named`, and nothing created in the folder."""
    folder = Path(raw["storage_path"]).parent
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    before = set(folder.rglob("*"))
    for command in ("validate", "run"):
        with pytest.MonkeyPatch.context() as mp:
            errors: list[str] = []
            mp.setattr("sys.stderr", _Capture(errors))
            code = commands.main([command, str(path)])
        text = "".join(errors)
        assert code == 2, (command, raw, text)
        assert text.startswith(f"granularity {command}: error:"), text
        lines = text.splitlines()
        # One line; or, for several bad entries of a list, a line per entry, each naming it.
        assert len(lines) == 1 or all(named in line for line in lines[1:]), text
        assert named in text, text
        assert set(folder.rglob("*")) == before, (command, raw)


class _Capture:
    """A stderr stand-in that keeps what is written (capsys cannot be reset inside @given)."""

    def __init__(self, into: list[str]) -> None:
        self.into = into

    def write(self, text: str) -> int:
        self.into.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(("case", "edit", "values", "named"), CASES, ids=[c[0] for c in CASES])
def test_bad_values_exit_2_with_one_line_and_nothing_created(case, edit, values, named):
    @CLI_PROPS
    @given(value=values)
    def check(value: object) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _refused(edit(base_spec(Path(tmp)), value), named)

    check()
