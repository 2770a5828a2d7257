"""Sweep specs: field-naming errors, unknown keys, overrides, and the shipped specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sweeps.spec import SpecError, load_spec, parse_spec, shipped_specs

SPECS = sorted(Path(__file__).resolve().parents[1].joinpath("sweeps").glob("*.yaml"))


def minimal(**extra) -> dict:
    return {"name": "demo", "dataset": {"name": "synthetic"}, "target": "superclass", **extra}


def problems(raw, overrides=()) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw, overrides=overrides)
    assert isinstance(info.value, ValueError)
    return info.value.problems


def test_minimal_spec_gets_defaults():
    spec = parse_spec(minimal())
    assert spec.seed_list() == [0, 1, 2]
    assert spec.tracking.uri == "sqlite:///mlflow.db"
    assert [a.kind for a in spec.factors.hierarchies] == ["manual"]
    assert spec.resolved_storage_path(Path("/x")) == Path("/x/granularity_runs/demo")


def test_every_problem_is_named_with_its_path_and_value():
    raw = minimal(
        factors={"hierarchies": ["manual", "randm"], "data_fractions": [0.5, 1.5]},
        seeds=0,
        resources={"gpu": -1},
    )
    found = problems(raw)
    assert any(
        p.startswith("factors.hierarchies[1].kind") and "'randm'" in p and "'random'" in p
        for p in found
    )
    assert any(p.startswith("factors.data_fractions") and "1.5" in p for p in found)
    assert any(p.startswith("seeds") for p in found)
    assert any(p.startswith("resources.gpu") and "-1" in p for p in found)
    message = str(SpecError(found))
    assert message.count("\n  - ") == len(found)  # one line per problem


def test_unknown_keys_are_named_with_the_accepted_ones():
    found = problems(minimal(pretrain={"epoch": 3}, colour="red"))
    assert any("pretrain" in p and "'epoch'" in p and "epochs" in p for p in found)
    assert any("'colour'" in p and "accepted" in p for p in found)


def test_missing_required_field():
    found = problems({"name": "demo", "target": 0})
    assert found == ["dataset: required field is missing"]


def test_perturbed_needs_p_and_p_only_for_perturbed():
    assert any("needs p" in p for p in problems(minimal(factors={"hierarchies": ["perturbed"]})))
    found = problems(minimal(factors={"hierarchies": [{"kind": "random", "p": 0.3}]}))
    assert any("p applies only" in p for p in found)


def test_repeated_arm_labels_are_rejected():
    found = problems(minimal(factors={"hierarchies": ["random", {"kind": "random"}]}))
    assert any("repeat" in p and "random" in p for p in found)


def test_search_parameters_must_be_tunable_settings():
    search = {"parameters": {"pretrain.lrr": {"low": 0.01, "high": 0.1}}}
    assert any("cannot tune 'pretrain.lrr'" in p for p in problems(minimal(search=search)))
    search = {"parameters": {"pretrain.lr": {"low": 0.1, "high": 0.01}}}
    assert any("must be below" in p for p in problems(minimal(search=search)))


def test_overrides_parse_yaml_values():
    spec = parse_spec(
        minimal(),
        overrides=[
            "pretrain.epochs=2",
            "seeds=[4, 5]",
            "factors.data_fractions=[0.1, 1]",
            "dataset.options.branching=[2, 2]",
            "resources.gpu=0.25",
            "pack=3",
        ],
    )
    assert spec.pretrain.epochs == 2
    assert spec.seed_list() == [4, 5]
    assert spec.factors.data_fractions == [0.1, 1.0]
    assert spec.dataset.options == {"branching": [2, 2]}
    assert spec.resources.gpu == 0.25
    assert spec.pack == 3


def test_unknown_override_keys_are_errors_naming_the_key():
    found = problems(minimal(), overrides=["pretrain.epoch=2", "sedes=1", "seeds.x=1", "novalue"])
    assert "unknown key 'epoch' under pretrain" in found[0] and "epochs" in found[0]
    assert "unknown key 'sedes'" in found[1]
    assert "no sub-keys" in found[2]
    assert "expected key=value" in found[3]


def test_override_values_are_validated_like_the_file():
    found = problems(minimal(), overrides=["pretrain.epochs=-1"])
    assert found[0].startswith("pretrain.epochs") and "-1" in found[0]


def test_smoke_overrides_apply_before_command_line_ones(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(minimal(smoke={"pretrain.epochs": 1, "seeds": 1})))
    assert load_spec(path).pretrain.epochs == 20
    smoke = load_spec(path, ["seeds=2"], smoke=True)
    assert (smoke.pretrain.epochs, smoke.seed_list()) == (1, [0, 1])


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_hash_ignores_smoke_but_not_settings():
    a = parse_spec(minimal())
    assert a.spec_hash() == parse_spec(minimal(smoke={"seeds": 1})).spec_hash()
    assert a.spec_hash() != parse_spec(minimal(), overrides=["seeds=4"]).spec_hash()


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_validate_with_and_without_smoke(path):
    spec = load_spec(path)
    smoke = load_spec(path, smoke=True)
    assert smoke.name == spec.name
    text = path.read_text()
    assert "granularity run" in text and "ray job submit" in text  # launch commands in the header


def test_a_shipped_spec_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no sweeps/ folder here: the name resolves to the installed spec
    assert {"quickstart", "glyphs_protocol", "fashion_mnist"} <= set(shipped_specs())
    assert load_spec("quickstart").name == "quickstart"
    assert load_spec("glyphs_protocol.yaml").name == "glyphs_protocol"
    with pytest.raises(
        FileNotFoundError, match=r"no shipped spec has that name \(shipped: .*quickstart"
    ):
        load_spec("quickstrat")
    (tmp_path / "quickstart").write_text("name: mine\n")  # a file of that name wins
    with pytest.raises(SpecError):
        load_spec("quickstart")


def test_replicates_block_sets_the_design_and_the_seeds():
    spec = parse_spec(minimal(seeds=4, replicates={"initial": 2}))
    design = spec.design()
    assert spec.seed_list() == [0, 1, 2, 3] and design.max == 4 and design.looks() == [2, 4]
    assert design.spending == "obrien_fleming"
    assert design.stop_when == ("gain", "hierarchy", "u_test")
    # max beyond the listed seeds: the following integers.
    spec = parse_spec(minimal(seeds=[3, 7], replicates={"initial": 2, "max": 4, "step": 1}))
    assert spec.seed_list() == [3, 7, 8, 9] and spec.design().looks() == [2, 3, 4]
    assert parse_spec(minimal()).design() is None


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        ({"initial": 1}, "replicates.initial"),
        ({"initial": 4, "max": 3}, "max=3 is below initial=4"),
        ({"initial": 5}, "replicates.initial=5 exceeds the 3 seeds"),
        ({"spending": "linear"}, "replicates.spending"),
        ({"stop_when": ["gain", "p_value"]}, "replicates.stop_when[1]"),
        ({"stop_when": ["half_width"]}, "give half_width"),
        ({"typo": 1}, "unknown key 'typo'"),
    ],
)
def test_a_bad_replicates_block_is_named(block, needle):
    found = problems(minimal(replicates=block))
    assert len(found) == 1 and needle in found[0], found
