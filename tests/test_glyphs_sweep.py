"""The shipped glyph sweeps end to end on a tiny render: run -> MLflow -> analyze with hard examples.

The base is `sweeps/glyphs_protocol.yaml` (E1, which replaced the retired `glyphs.yaml`), its data
and crossed factors replaced by overrides."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import trainables_fixtures as fixtures

from sweeps import cli
from sweeps.ledger.mlflow_store import Tracker
from sweeps.spec import load_spec
from trainables import glyphs

ROOT = Path(__file__).resolve().parents[1]
FONTS = ("ukai", "uming", "wqy-zenhei")


def test_glyph_sweep_runs_and_reports_hard_examples(tmp_path, ray_address, monkeypatch):
    """The run joins the module's Ray session (as the e2e tests do)."""
    fixtures.require_system_files(glyphs.UNICODE_DIR / "CJKRadicals.txt", package="unicode-data")
    for font in FONTS:
        source = glyphs.FONTS[font]
        fixtures.require_system_files(glyphs.FONT_DIR / source.file, package=source.package)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRANULARITY_CACHE", str(tmp_path / "cache"))
    spec = str(ROOT / "sweeps" / "glyphs_protocol.yaml")
    overrides = [
        "dataset.options={radicals: 4, chars_per_radical: 3, fonts: [ukai, uming],"
        " test_fonts: [wqy-zenhei], image_size: 16, renders_per_font: 1, heldout_chars: 8}",
        "factors.dataset_options={}",
        "factors.finetune_modes=[linear]",
        "analysis={}",
        "factors.hierarchies=[manual, cluster_within, scratch]",
        "factors.levels=[radical, character]",
        "factors.data_fractions=[1.0]",
        "seeds=2",
        "pretrain.epochs=1",
        "finetune.epochs=1",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    assert cli.main(["run", spec, *overrides]) == 0
    tracker = Tracker(load_spec(spec, overrides), create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    # manual x 2 levels + cluster_within x 2 levels + scratch, x 2 seeds
    assert len(trials) == 10 and {r.info.status for r in trials} == {"FINISHED"}
    assert all("granularity.test_correct" in r.data.tags for r in trials)
    out = tmp_path / "report"
    assert (
        cli.main(
            [
                "analyze",
                "glyphs_protocol",
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = (out / "report.md").read_text()
    assert "hard examples (real data)" in report
    assert "Every arm on easy and hard examples" in report


FOLD_FONTS = ("ukai", "tw-kai", "uming", "hanazono", "wqy-zenhei", "ipa-gothic")


@pytest.mark.slow
def test_font_folds_cross_as_a_dataset_option(tmp_path, ray_address, monkeypatch):
    """`fold` crossed over 2 folds of 6 fonts: each fold's trials test on its own unseen fonts."""
    fixtures.require_system_files(glyphs.UNICODE_DIR / "CJKRadicals.txt", package="unicode-data")
    for font in FOLD_FONTS:
        source = glyphs.FONTS[font]
        fixtures.require_system_files(glyphs.FONT_DIR / source.file, package=source.package)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRANULARITY_CACHE", str(tmp_path / "cache"))
    spec = str(ROOT / "sweeps" / "glyphs_protocol.yaml")
    overrides = [
        "dataset.options={radicals: 4, chars_per_radical: 3, fonts: [ukai, uming, ipa-gothic],"
        " test_fonts: [tw-kai, hanazono, wqy-zenhei], folds: 2, image_size: 16,"
        " renders_per_font: 1, embedding: pixels}",
        "factors.dataset_options={fold: [0, 1]}",
        "factors.finetune_modes=[linear]",
        "factors.hierarchies=[manual, scratch]",
        "factors.levels=[character]",
        "factors.data_fractions=[1.0]",
        "seeds=1",
        "pretrain.epochs=1",
        "finetune.epochs=1",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    assert cli.main(["run", spec, *overrides]) == 0
    tracker = Tracker(load_spec(spec, overrides), create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get("granularity.role") == "trial"]
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}
    folds = sorted(json.loads(r.data.params["dataset_options"])["fold"] for r in trials)
    assert folds == [0, 0, 1, 1]
    # The glyph validation split is used: a finite pretraining validation error.
    pretrained = [r for r in trials if "pretrain/val_error" in r.data.metrics]
    assert pretrained and all(
        math.isfinite(r.data.metrics["pretrain/val_error"]) for r in pretrained
    )
