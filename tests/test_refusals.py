"""Inputs that used to get through: each is refused by `validate` exactly as by `run`.

Every case ends in exit 2 with one line on stderr naming the field (or the
limit) and creates nothing: a YAML alias bomb, a recursive alias, a document
nested too deep or too long, a bomb in an override value, a trainable that is
not callable or cannot take (config, report), a backbone or dataset option
(fixed or crossed) of the wrong name, type or range, a storage folder or SQLite store that cannot be created, a typo or a bad value in the `smoke:` block.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sweeps import commands
from sweeps.spec import bounded_yaml

BASE = {
    "name": "refused",
    "dataset": {"name": "sweeps_fake:fake_dataset"},
    "trainable": "sweeps_fake:train",
    "target": "coarse",
    "factors": {"hierarchies": ["manual", "scratch"], "levels": ["leaf"]},
    "seeds": 1,
}


def alias_bomb(levels: int = 9) -> str:
    """The billion-laughs document: 9 lists of 9 aliases of the one before (~9^9 values)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _spec_text(tmp_path: Path, **fields) -> str:
    raw = {
        **BASE,
        "storage_path": str(tmp_path / "store"),
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        **fields,
    }
    return yaml.safe_dump(raw)


def _file(tmp_path: Path) -> Path:
    """A plain file where a folder is expected."""
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


# (case, spec text from tmp_path, overrides, what the line must name, commands)
CASES = [
    (
        "alias bomb",
        lambda t: _spec_text(t) + "bomb:\n" + "".join(f"  {x}\n" for x in alias_bomb().split("\n")),
        [],
        f"the limit is {bounded_yaml.MAX_NODES:,}",
        ("validate", "run", "status"),
    ),
    (
        "recursive alias",
        lambda t: _spec_text(t) + "loop: &loop [*loop]\n",
        [],
        "recursive alias",
        ("validate", "run", "status"),
    ),
    (
        "nested too deep",
        lambda t: _spec_text(t) + "deep: " + "[" * 300 + "]" * 300 + "\n",
        [],
        f"limit of {bounded_yaml.MAX_DEPTH} levels",
        ("validate", "run", "status"),
    ),
    (
        "document too long",
        lambda t: _spec_text(t) + "#" * (bounded_yaml.MAX_BYTES + 1) + "\n",
        [],
        f"limit of {bounded_yaml.MAX_BYTES:,} bytes",
        ("validate", "run", "status"),
    ),
    (
        "alias bomb in an override",
        lambda t: _spec_text(t),
        [
            "dataset.options.x={a: &a [1,1,1,1,1,1,1,1,1,1], b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]"
            ", c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c],"
            " e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]}"
        ],
        "override 'dataset.options.x'",
        ("validate", "run", "status"),
    ),
    (
        "trainable not callable",
        lambda t: _spec_text(t, trainable="os:sep"),
        [],
        "trainable: 'os:sep' is a str, not callable",
        ("validate", "run"),
    ),
    (
        "trainable with another signature",
        lambda t: _spec_text(t, trainable="os:getcwd"),
        [],
        "trainable: 'os:getcwd' has the signature",
        ("validate", "run"),
    ),
    (
        "storage under a file",
        lambda t: _spec_text(t, storage_path=str(_file(t) / "store")),
        [],
        "storage_path:",
        ("validate", "run"),
    ),
    (
        "storage on a file system that refuses folders",
        lambda t: _spec_text(t, storage_path="/proc/granularity-store"),
        [],
        "storage_path: the storage folder /proc/granularity-store cannot be created",
        ("validate", "run"),
    ),
    (
        "SQLite store under a file",
        lambda t: _spec_text(t, tracking={"uri": f"sqlite:///{_file(t) / 'mlflow.db'}"}),
        [],
        "tracking.uri:",
        ("validate", "run", "status"),
    ),
    (
        "SQLite store on a file system that refuses files",
        lambda t: _spec_text(t, tracking={"uri": "sqlite:////proc/granularity/mlflow.db"}),
        [],
        "tracking.uri: the SQLite store /proc/granularity/mlflow.db",
        ("validate", "run", "status"),
    ),
    (
        "backbone option out of range",
        lambda t: _spec_text(
            t,
            trainable="trainables:train",
            factors={
                **BASE["factors"],
                "backbones": [{"name": "twolayer", "options": {"width": -1}}],
            },
        ),
        [],
        "factors.backbones[0].options: twolayer option width=-1: expected an integer >= 1",
        ("validate", "run", "status"),
    ),
    (
        "backbone option unknown",
        lambda t: _spec_text(t, trainable="trainables:train"),
        ["factors.backbones=[{name: twolayer, options: {widht: 8}}]"],
        "factors.backbones[0].options: unknown twolayer option 'widht'",
        ("validate", "run", "status"),
    ),
    (
        "dataset option out of range",
        lambda t: _spec_text(
            t,
            trainable="trainables:train",
            dataset={"name": "glyphs", "options": {"chars_per_radical": -3}},
            target="radical",
        ),
        [],
        "dataset.options: glyphs option chars_per_radical=-3 is out of range",
        ("validate", "run", "status"),
    ),
    (
        "crossed dataset option out of range",
        lambda t: _spec_text(
            t,
            trainable="trainables:train",
            dataset={"name": "glyphs"},
            target="radical",
            factors={**BASE["factors"], "dataset_options": {"renders_per_font": [2, 0]}},
        ),
        [],
        "factors.dataset_options.renders_per_font: glyphs option renders_per_font=0",
        ("validate", "run", "status"),
    ),
    (
        "dataset option unknown",
        lambda t: _spec_text(
            t,
            trainable="trainables:train",
            dataset={"name": "synthetic", "options": {"train_per_clas": 3}},
            target="superclass",
        ),
        [],
        "dataset.options: unknown synthetic option 'train_per_clas'",
        ("validate", "run", "status"),
    ),
    (
        "smoke typo",
        lambda t: _spec_text(t, smoke={"pretrain.epochz": 1}),
        [],
        "smoke: override 'pretrain.epochz=1': unknown key 'epochz'",
        ("validate", "run", "status"),
    ),
    (
        "smoke value out of range",
        lambda t: _spec_text(t, smoke={"pretrain.epochs": -1}),
        [],
        "smoke: pretrain.epochs",
        ("validate", "run", "status"),
    ),
]


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize(
    ("case", "text", "overrides", "named", "cmds"), CASES, ids=[c[0] for c in CASES]
)
def test_refused_with_one_line_and_nothing_created(
    tmp_path, capsys, case, text, overrides, named, cmds
):
    path = tmp_path / "spec.yaml"
    path.write_text(text(tmp_path))
    before = _tree(tmp_path)
    for command in cmds:
        code = commands.main([command, str(path), *overrides])
        err = capsys.readouterr().err
        assert code == 2, (command, err)
        assert err.startswith(f"granularity {command}: error:"), err
        assert named in err, err
        assert err.count("\n") == 1, err  # one line
        assert _tree(tmp_path) == before, command
    assert not Path("/proc/granularity-store").exists()


def test_the_smoke_block_applies_when_asked_and_is_checked_when_not(tmp_path):
    from sweeps.spec import parse_spec

    raw = yaml.safe_load(_spec_text(tmp_path, smoke={"pretrain.epochs": 1, "seeds": 1}))
    assert parse_spec(raw).pretrain.epochs != 1
    assert parse_spec(raw, smoke=True).pretrain.epochs == 1
    # An override on top of the smoke settings is checked with them.
    assert parse_spec(raw, smoke=True, overrides=["pretrain.epochs=3"]).pretrain.epochs == 3


def test_bounded_yaml_reads_what_safe_load_reads():
    text = "a: &x [1, 2]\nb: *x\nc: {d: 'e'}\n"
    assert bounded_yaml.safe_load(text) == yaml.safe_load(text)
    assert bounded_yaml.safe_load("") is None
    # Just under the bound: read. One value more: refused.
    wide = "[" + ", ".join(["1"] * (bounded_yaml.MAX_NODES - 1)) + "]"
    assert len(bounded_yaml.safe_load(wide)) == bounded_yaml.MAX_NODES - 1
    with pytest.raises(bounded_yaml.YamlLimitError, match="the limit is"):
        bounded_yaml.safe_load(wide[:-1] + ", 1]")
