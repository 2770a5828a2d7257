"""contracts.py: the arms table agrees with the hierarchy registry, and the registries share one form."""

from __future__ import annotations

import pytest

import contracts
from contracts import ARMS, CELL_COLUMNS, Cell, Registry
from hierarchies.registry import hierarchy_builder, list_hierarchy_kinds
from sweeps.spec import SpecError, parse_spec


@pytest.mark.parametrize("arm", [a for a in ARMS if a.builder], ids=lambda a: a.name)
def test_every_arm_is_built_by_a_registered_kind_that_takes_its_arguments(arm):
    assert arm.builder in list_hierarchy_kinds()
    import inspect

    accepted = set(inspect.signature(hierarchy_builder(arm.builder)).parameters)
    assert set(arm.inputs) | set(arm.fixed) <= accepted


@pytest.mark.parametrize("kind", contracts.ARM_KINDS)
def test_the_spec_accepts_every_arm_of_the_table(kind):
    arm = {"kind": kind, "p": 0.5} if "p" in contracts.arm(kind).options else kind
    spec = parse_spec(
        {
            "name": "t",
            "dataset": {"name": "synthetic"},
            "target": 0,
            "factors": {"hierarchies": [arm]},
        }
    )
    assert spec.factors.hierarchies[0].kind == kind


def test_an_arm_kind_outside_the_table_is_a_spec_error():
    with pytest.raises(SpecError, match="hierarchies"):
        parse_spec(
            {
                "name": "t",
                "dataset": {"name": "synthetic"},
                "target": 0,
                "factors": {"hierarchies": ["oak"]},
            }
        )
    with pytest.raises(ValueError, match="unknown hierarchy arm kind 'oak'"):
        contracts.arm("oak")


def test_a_cell_names_its_runs_and_reads_rows():
    cell = Cell.of(
        {
            "hierarchy": "random",
            "level_name": None,
            "data_fraction": 0.25,
            "backbone": "resnet18",
            "seed": 3,
        }
    )
    assert cell == ("random", "scratch", 0.25, "resnet18")  # a tuple: sorts and hashes as one
    assert cell.run_name(3) == "random/scratch/f0.25/resnet18/s3"
    assert cell.key == "random/scratch/f0.25/resnet18"
    row = dict(zip(CELL_COLUMNS, ("manual", "leaf", "1", "twolayer"), strict=True))
    assert Cell.of(row) == Cell("manual", "leaf", 1.0, "twolayer")


@pytest.mark.parametrize(
    "create, what",
    [
        ("trainables:create_dataset", "dataset"),
        ("hierarchies:build_hierarchy", "hierarchy kind"),
        ("hierarchies:create_hierarchy", "hierarchy kind"),
    ],
)
def test_the_registries_name_an_unknown_entry_the_same_way(create, what):
    import importlib

    module, _, attr = create.partition(":")
    with pytest.raises(RuntimeError, match=rf"^Unknown {what} \(nope\); known: "):
        getattr(importlib.import_module(module), attr)("nope")


def test_an_unknown_backbone_is_named_like_the_others():
    from trainables import create_backbone, is_backbone

    with pytest.raises(RuntimeError, match=r"^Unknown backbone \(nope\); known: twolayer, "):
        create_backbone("nope", 3)
    assert is_backbone("twolayer") and is_backbone("resnet18") and not is_backbone("nope")


def test_a_registry_refuses_a_second_builder_for_a_name():
    colours = Registry("colour")
    red = colours.register("red")(lambda: "#f00")
    assert colours.register("red")(red) is red  # the same builder again is harmless
    with pytest.raises(RuntimeError, match=r"colour \(red\) is already registered"):
        colours.register("red")(lambda: "#e00")
    assert colours.create("red") == "#f00" and colours.names() == ["red"]
    assert not colours.has("blue")
