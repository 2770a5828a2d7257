"""Bad input, property-based: any invalid spec or override ends in a SpecError naming the field.

Never another exception type, never a traceback from the CLI (exit 2 with
the message), and nothing written: no MLflow store, no storage folder. Also:
YAML is read with safe loading only (a python tag is an error, its code never
runs), pickles are read only for CIFAR-100, checkpoints only with
weights_only=True, and nothing in the project binds a server to 0.0.0.0.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeps import commands
from sweeps.plan import build_plan
from sweeps.spec import Spec, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
FAKE_LEVELS = ("coarse", "mid", "fine", "leaf")  # tests/sweeps_fake.py's hierarchy

# Deterministic examples: CI sees the same inputs every run.
PROPS = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def base_spec(**extra) -> dict:
    raw = {
        "name": "props",
        "dataset": {"name": "sweeps_fake:fake_dataset"},
        "trainable": "sweeps_fake:train",
        "target": "coarse",
        "factors": {
            "hierarchies": ["manual", "random", "scratch"],
            "levels": ["mid", "leaf"],
            "data_fractions": [0.5, 1.0],
        },
        "seeds": 2,
        "pretrain": {"epochs": 1},
        "finetune": {"epochs": 1},
    }
    raw.update(extra)
    return raw


def set_path(raw: dict, dotted: str, value) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(raw))  # deep copy
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return raw


def validate(raw: dict, tmp: Path) -> Spec:
    """What `granularity validate` checks: the schema, then the plan (levels, dataset, backbones)."""
    spec = parse_spec(raw)
    build_plan(spec, write=False, storage=tmp / "store")
    return spec


def assert_names(err: SpecError, field: str) -> None:
    text = str(err)
    assert field in text, f"{field!r} not named in:\n{text}"
    assert err.problems and all(isinstance(p, str) and p for p in err.problems)


# ---- values, valid and not ---------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bad_fraction = (
    st.floats(max_value=0.0, allow_nan=False)
    | st.floats(min_value=1.0, exclude_min=True, allow_nan=False)
    | st.just(float("nan"))
    | st.text(min_size=1, max_size=6).filter(lambda s: _not_number(s))
    | st.booleans()
)


def _not_number(text: str) -> bool:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return True
    return not isinstance(value, int | float) or isinstance(value, bool)


# Tracking URIs whose scheme MLflow's tracking store does not take, or that
# sweeps refuse (MLflow's file store: a plain path or file://).
bad_scheme_uris = (
    st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
    .filter(
        lambda s: s not in ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
    )
    .map(lambda s: f"{s}://host/x")
    | st.text(alphabet="abc/._-", min_size=1, max_size=12).filter(lambda s: s != "databricks")
    | st.just("file:///tmp/mlruns")
)

level_names = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=8
)
unknown_level = level_names.filter(
    lambda s: (
        s not in FAKE_LEVELS and s not in ("all", "finer", "target_and_finer") and not s.isdigit()
    )
)


# Each case: (dotted field, strategy of invalid values, field path the error must name).
INVALID_FIELDS = [
    (
        "factors.data_fractions",
        st.lists(bad_fraction, min_size=1, max_size=3),
        "factors.data_fractions",
    ),
    ("factors.data_fractions", st.just([]), "factors.data_fractions"),
    (
        "factors.data_fractions",
        st.floats(0.01, 1.0).map(lambda f: [f, f]),
        "factors.data_fractions",
    ),
    ("seeds", st.integers(max_value=0) | st.booleans() | st.just([]), "seeds"),
    (
        "seeds",
        st.lists(st.integers(0, 5), min_size=2, max_size=5).filter(lambda s: len(set(s)) < len(s)),
        "seeds",
    ),
    ("seeds", st.floats(allow_nan=False).filter(lambda f: not f.is_integer()), "seeds"),
    ("factors.levels", st.just([]), "factors.levels"),
    ("factors.levels", st.sampled_from(FAKE_LEVELS).map(lambda n: [n, n]), "factors.levels"),
    (
        "factors.levels",
        st.lists(unknown_level, min_size=1, max_size=2, unique=True),
        "factors.levels[0]",
    ),
    ("factors.levels", st.integers(4, 100).map(lambda i: [i]), "factors.levels[0]"),
    ("factors.hierarchies", st.just([]), "factors.hierarchies"),
    (
        "factors.hierarchies",
        st.sampled_from(["manual", "random", "scratch"]).map(lambda k: [k, k]),
        "factors.hierarchies",
    ),
    (
        "factors.hierarchies",
        level_names.filter(
            lambda s: (
                s
                not in (
                    "manual",
                    "random",
                    "cluster_within",
                    "cluster_global",
                    "perturbed",
                    "scratch",
                )
            )
        ).map(lambda k: [k]),
        "factors.hierarchies[0].kind",
    ),
    (
        "factors.hierarchies",
        st.floats(-5, 5)
        .filter(lambda p: not 0 <= p <= 1)
        .map(lambda p: [{"kind": "perturbed", "p": p}]),
        "factors.hierarchies[0].p",
    ),
    ("factors.backbones", st.just([]), "factors.backbones"),
    ("factors.backbones", st.just(["twolayer", "twolayer"]), "factors.backbones"),
    ("target", unknown_level, "target"),
    ("target", st.integers(4, 50), "target"),
    (
        "pretrain.lr",
        st.floats(max_value=0.0) | st.just(float("inf")) | st.text(max_size=4).filter(_not_number),
        "pretrain.lr",
    ),
    (
        "pretrain.epochs",
        st.integers(max_value=-1) | st.just(1.5) | st.just("ten"),
        "pretrain.epochs",
    ),
    ("finetune.mode", level_names.filter(lambda s: s not in ("linear", "full")), "finetune.mode"),
    ("retries", st.integers(max_value=-1), "retries"),
    ("resources.cpu", st.floats(max_value=0.0, allow_nan=False), "resources.cpu"),
    ("pack", st.integers(max_value=0) | st.just("some"), "pack"),
    ("name", st.just("") | st.just("has space") | st.just("../escape"), "name"),
    ("dataset.options", st.just({"x": float("nan")}), "dataset.options"),
    ("trainable", st.just("no_such_module_xyz:train"), "trainable"),
    ("dataset.name", st.just("no_such_module_xyz:make"), "dataset"),
    ("tracking.uri", bad_scheme_uris, "tracking.uri"),
    (
        "tracking.uri",
        st.sampled_from(["sqlite://", "sqlite:///", "sqlite:relative.db", "http://", "https:///x"]),
        "tracking.uri",
    ),
    # Plans too large to expand: refused by counting, before expansion (at once).
    ("seeds", st.integers(20_001, 10**12), "max_trials"),
    ("max_trials", st.integers(max_value=0) | st.just("many"), "max_trials"),
]


@pytest.mark.parametrize(
    ("field", "values", "named"),
    INVALID_FIELDS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(INVALID_FIELDS)],
)
def test_invalid_field_is_a_spec_error_naming_it(field, values, named):
    @PROPS
    @given(value=values)
    def check(value):
        raw = set_path(base_spec(), field, value)
        with tempfile.TemporaryDirectory() as tmp:
            with pytest.raises(SpecError) as info:
                validate(raw, Path(tmp))
                if field == "trainable":  # checked when the sweep starts, before the plan
                    from sweeps.runner import resolve_trainable

                    resolve_trainable(parse_spec(raw))
            assert not (Path(tmp) / "store").exists()
        assert_names(info.value, named)

    check()


@pytest.mark.parametrize(("field", "values", "named"), INVALID_FIELDS[:12])
def test_the_same_through_overrides(field, values, named):
    @settings(PROPS, max_examples=40)
    @given(value=values)
    def check(value):
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        with tempfile.TemporaryDirectory() as tmp:
            with pytest.raises(SpecError) as info:
                validate(
                    parse_spec(base_spec(), overrides=[f"{field}={text}"]).model_dump(), Path(tmp)
                )
        assert_names(info.value, named)

    check()


@PROPS
@given(
    path=st.sampled_from(
        ["", "factors", "pretrain", "finetune", "resources", "tracking", "dataset", "search"]
    ),
    key=st.text(min_size=1, max_size=10).filter(lambda k: k.isidentifier()),
    value=json_values,
)
def test_unknown_keys_are_named(path, key, value):
    known = {
        "": Spec.model_fields,
        "factors": {"hierarchies", "levels", "data_fractions", "backbones"},
        "pretrain": {
            "epochs",
            "lr",
            "batch_size",
            "weight_decay",
            "optimizer",
            "momentum",
            "schedule",
        },
        "finetune": {
            "epochs",
            "lr",
            "batch_size",
            "weight_decay",
            "optimizer",
            "momentum",
            "schedule",
            "mode",
            "feature_norm",
        },
        "resources": {"cpu", "gpu"},
        "tracking": {"uri", "artifact_location"},
        "dataset": {"name", "options"},
        "search": {"parameters", "n_trials", "metric", "scope", "reference", "seed", "parallel"},
    }[path]
    if key in known:
        return
    dotted = f"{path}.{key}" if path else key
    raw = base_spec()
    if path == "search":
        raw["search"] = {"parameters": {"pretrain.lr": {"low": 0.01, "high": 0.1}}}
    with pytest.raises(SpecError) as info:
        parse_spec(set_path(raw, dotted, value))
    assert repr(key) in str(info.value) or key in str(info.value)
    with pytest.raises(SpecError) as info:
        parse_spec(raw, overrides=[f"{dotted}=1"])
    assert key in str(info.value)


@PROPS
@given(
    raw=st.dictionaries(
        st.sampled_from(list(Spec.model_fields) + ["extra"]), json_values, max_size=8
    )
)
def test_any_mapping_is_a_spec_or_a_spec_error(raw):
    try:
        spec = parse_spec({**base_spec(), **raw})
    except SpecError as err:
        assert err.problems
        return
    # What validated must hash (trial keys are canonical JSON of it).
    assert re.fullmatch(r"[0-9a-f]{16}", spec.spec_hash())


@PROPS
@given(
    raw=json_values,
    overrides=st.lists(st.text(max_size=30), max_size=4),
    smoke=st.booleans(),
)
def test_any_document_and_overrides_never_raise_anything_else(raw, overrides, smoke):
    for candidate in (raw, {**base_spec(), "smoke": raw} if smoke else base_spec()):
        try:
            parse_spec(candidate, overrides=overrides, smoke=smoke)
        except SpecError:
            pass


@settings(PROPS, max_examples=60)
@given(text=st.text(max_size=200))
def test_any_yaml_text_is_a_spec_or_a_spec_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        try:
            path.write_text(text)
        except (UnicodeEncodeError, ValueError):
            return
        try:
            load_spec(path)
        except SpecError:
            pass


@settings(PROPS, max_examples=30)
@given(
    root=st.text(alphabet="abcdefghij_", min_size=1, max_size=12),
    dataset=st.sampled_from(["cifar100", "inat2021", "imagenet21k"]),
)
def test_missing_data_root_names_the_option(root, dataset):
    raw = base_spec(
        dataset={"name": dataset, "options": {"root": f"/nonexistent-granularity/{root}"}},
        trainable="trainables:train",
        target=0,
        factors={"hierarchies": ["manual"], "levels": "all"},
    )
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(SpecError) as info:
        validate(raw, Path(tmp))
    assert_names(info.value, "dataset.options.root")
    assert "nonexistent-granularity" in str(info.value)


@settings(PROPS, max_examples=30)
@given(
    name=level_names.filter(
        lambda s: (
            s not in ("synthetic", "digits", "cifar100", "inat2021", "imagenet21k", "imagefolder")
        )
    )
)
def test_unknown_dataset_and_backbone_names(name):
    raw = base_spec(dataset={"name": name}, trainable="trainables:train")
    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(SpecError) as info:
            validate(raw, Path(tmp))
        assert_names(info.value, "dataset")
        raw = base_spec(trainable="trainables:train", factors={"backbones": [f"nonet_{name}"]})
        with pytest.raises(SpecError) as info:
            validate(raw, Path(tmp))
        assert_names(info.value, "factors.backbones[0].name")


# ---- the CLI: exit 2, a message, nothing written ------------------------------------------
CLI_CASES = [
    ({"factors": {"data_fractions": [0.5, 0.5]}}, [], "factors.data_fractions"),
    ({"factors": {"data_fractions": [-0.1]}}, [], "factors.data_fractions"),
    ({"factors": {"data_fractions": [1.5]}}, [], "factors.data_fractions"),
    ({"factors": {"levels": ["nope"]}}, [], "factors.levels[0]"),
    ({"factors": {"levels": []}}, [], "factors.levels"),
    ({"factors": {"levels": ["mid", 1]}}, [], "factors.levels[1]"),
    ({"factors": {"hierarchies": ["manual", "manual"]}}, [], "factors.hierarchies"),
    ({"seeds": [0, 0]}, [], "seeds"),
    ({"seeds": True}, [], "seeds"),
    ({"pretrain": {"lr": ".nan"}}, ["pretrain.lr=.nan"], "pretrain.lr"),
    ({}, ["factors.backbones=[twolayer, twolayer]"], "factors.backbones"),
    ({}, ["pretrain.epoch=2"], "epoch"),
    (
        {"trainable": "trainables:train", "factors": {"backbones": ["resnet_nope"]}},
        [],
        "factors.backbones[0].name",
    ),
    (
        {
            "dataset": {"name": "cifar100", "options": {"root": "/nonexistent-granularity"}},
            "trainable": "trainables:train",
            "target": 0,
        },
        [],
        "dataset.options.root",
    ),
    ({"dataset": {"name": "no_such_dataset"}, "trainable": "trainables:train"}, [], "dataset"),
    ({"trainable": "no_such_module_xyz:train"}, [], "trainable"),
    ({"tracking": {"uri": "foo://bar"}}, [], "tracking.uri"),
    ({"tracking": {"uri": "./mlruns"}}, [], "tracking.uri"),
    ({}, ["tracking.uri=postgresql+nosuchdriver://u@h/db"], "tracking.uri"),
    ({}, ["seeds=10000000"], "--max-trials 100000000"),
    ({}, ["seeds=100", "--max-trials", "50"], "--max-trials 1000"),
    ({}, ["--max-trials", "0"], "--max-trials"),
]


@pytest.mark.parametrize(("extra", "overrides", "named"), CLI_CASES)
def test_cli_exits_2_naming_the_field_and_writes_nothing(tmp_path, capsys, extra, overrides, named):
    raw = base_spec(
        storage_path=str(tmp_path / "store"),
        tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    # status reads MLflow and the plan, not the trainable (it imports nothing of it).
    for command in ("validate", "run") + (("status",) if named != "trainable" else ()):
        try:
            code = commands.main([command, str(path), *overrides])
        except SystemExit as usage:  # argparse: a bad flag value
            code = usage.code
        assert code == 2
        err = capsys.readouterr().err
        assert "error:" in err and named in err, err
        assert "Traceback" not in err
        if not err.startswith("usage:"):
            assert err.startswith(f"granularity {command}: error:")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "store").exists()
    assert not (tmp_path / "mlartifacts").exists()


# ---- safe loading ---------------------------------------------------------------------------
def test_yaml_python_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.yaml"
    path.write_text(
        yaml.safe_dump(base_spec()) + f"description: !!python/object/apply:os.mkdir ['{marker}']\n"
    )
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_spec(
            base_spec(), overrides=[f"description=!!python/object/apply:os.mkdir ['{marker}']"]
        )
    assert not marker.exists()


def _sources() -> list[Path]:
    return [
        p
        for package in ("sweeps", "trainables", "hierarchies", "analysis")
        for p in (ROOT / package).rglob("*.py")
    ]


def test_no_unsafe_deserialisation_in_the_project():
    offenders = []
    for path in _sources():
        text = path.read_text()
        rel = path.relative_to(ROOT).as_posix()
        for match in re.finditer(r"yaml\.(load|unsafe_load|full_load)\(", text):
            offenders.append(f"{rel}: yaml.{match.group(1)}")
        if re.search(r"\bpickle\.loads?\(", text) and rel != "hierarchies/manual.py":
            offenders.append(f"{rel}: pickle.load (only CIFAR-100's pickles may be read)")
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in call.group(1):
                offenders.append(f"{rel}: torch.load without weights_only=True")
        if re.search(r"allow_pickle\s*=\s*True", text):
            offenders.append(f"{rel}: np.load(allow_pickle=True)")
    assert offenders == []


def test_nothing_binds_all_interfaces_by_default():
    offenders = [
        path.relative_to(ROOT).as_posix()
        for path in _sources()
        if re.search(r"""["']0\.0\.0\.0["']|host\s*=\s*["']["']""", path.read_text())
    ]
    assert offenders == []
    servers = (ROOT / "tests" / "servers.py").read_text()
    assert "listen_addresses=127.0.0.1" in servers
    assert re.search(r'"--host",\s*"127\.0\.0\.1"', servers)


def test_finite_numbers_only():
    with pytest.raises(SpecError, match="finite"):
        parse_spec(base_spec(), overrides=["pretrain.lr=.inf"])
    spec = parse_spec(base_spec(), overrides=["dataset.options.scale=2.5"])
    assert math.isfinite(spec.dataset.options["scale"])
