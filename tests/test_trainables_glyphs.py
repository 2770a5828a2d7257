"""The real-image datasets that install from Debian: CJK glyphs (Unicode radicals) and Fashion-MNIST.

Glyph tests render a tiny set (2 training fonts + 1 test font, 4 radicals x 3
characters) into a temp cache; Fashion-MNIST tests read IDX files the tests
write, and the installed ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trainables_fixtures as fixtures

from trainables import (
    create_dataset,
    glyph_fonts,
    glyph_render,
    glyph_unihan,
    validate_dataset_options,
)
from trainables import glyphs as g
from trainables.fashion_mnist import CATEGORY_OF_CLASS, FASHION_MNIST_ROOT

TINY = {
    "radicals": 4,
    "chars_per_radical": 3,
    "fonts": ["ukai", "uming"],
    "test_fonts": ["wqy-zenhei"],
    "renders_per_font": 2,
    "image_size": 24,
    "embedding": "pixels",
}


def _need_glyph_packages(fonts=("ukai", "uming", "wqy-zenhei")) -> None:
    fixtures.require_system_files(
        g.UNICODE_DIR / "Unihan_IRGSources.txt.bz2",
        g.UNICODE_DIR / "CJKRadicals.txt",
        package="unicode-data",
    )
    for name in fonts:
        fixtures.require_system_files(
            g.FONT_DIR / g.FONTS[name].file, package=g.FONTS[name].package
        )


@pytest.fixture
def tiny(tmp_path):
    _need_glyph_packages()
    return create_dataset("glyphs", cache_dir=str(tmp_path / "cache"), **TINY)


def test_taxonomy_comes_from_the_unicode_han_database():
    _need_glyph_packages(fonts=())
    entries = {chr(e.codepoint): e for e in g.han_entries(str(g.UNICODE_DIR))}
    # 好 = 女 (radical 38) + 子 (3 strokes); 們 = 人 (9) + 8; 们 (simplified) = 人 + 3.
    assert (entries["好"].radical, entries["好"].residual) == ("38", 3)
    assert (entries["們"].radical, entries["們"].residual) == ("9", 8)
    assert entries["的"].frequency == 1
    strokes = g.radical_strokes(str(g.UNICODE_DIR))
    assert strokes["85"] == ("水", 4)
    assert strokes["149"] == ("言", 7) and strokes["149'"] == ("讠", 2)  # simplified form
    assert len(entries) > 5000  # kFrequency covers ~5,000 common characters


def test_tiny_render_has_the_levels_and_the_font_split(tiny):
    h = tiny.hierarchy
    assert h.level_names == g.LEVEL_NAMES and tiny.default_target == "radical"
    sizes = dict(zip(h.level_names, h.level_sizes(), strict=True))
    assert sizes["radical"] == 4 and sizes["character"] == 12 and sizes["glyph"] == 24
    assert 1 <= sizes["radical_strokes"] <= 4 and 4 <= sizes["radical_residual"] <= 12
    # The selection follows the Unicode data: 3 characters under each of the 4 radicals.
    chars = tiny.meta["characters"]
    entries = {chr(e.codepoint): e for e in g.han_entries(str(g.UNICODE_DIR))}
    radical_of_char = h.mapping(h.level_index("radical"))[:: len(TINY["fonts"])]
    for c, char in enumerate(chars):
        same = [chars[i] for i in np.flatnonzero(radical_of_char == radical_of_char[c])]
        assert len(same) == 3 and {entries[x].radical for x in same} == {entries[char].radical}
    # 12 characters x 2 training fonts x 2 renders; 1 validation render of a quarter of
    # the training glyphs in a split of its own; the test font once each.
    assert len(tiny.train) == 48 and len(tiny.test) == 12 and 0 < len(tiny.val) < 24
    assert tiny.train.inputs.shape == (48, 1, 24, 24) and tiny.train.inputs.dtype == torch.uint8
    assert (tiny.train.inputs.flatten(1).amax(1) > 0).all()  # no empty glyph
    assert (tiny.test.inputs.flatten(1).amax(1) > 0).all()
    assert tiny.meta["test_fonts"] == ["wqy-zenhei"] and "wqy-zenhei" not in tiny.meta["fonts"]
    # A test example carries its character (the leaf is that character's first glyph).
    char_level = h.level_index("character")
    test_chars = h.mapping(char_level)[tiny.test.leaf]
    assert test_chars.tolist() == list(range(12))
    # The test font is another design: its glyph differs from every training render of the character.
    for c in range(12):
        train_renders = tiny.train.inputs[h.mapping(char_level)[tiny.train.leaf] == c].float()
        assert (train_renders - tiny.test.inputs[c].float()).abs().mean(dim=(1, 2, 3)).min() > 5


def test_only_glyphs_every_font_really_has():
    _need_glyph_packages(fonts=("ipa-gothic", "wqy-zenhei"))
    japanese = g.eligible_characters(fonts=["ipa-gothic"], max_frequency=5)
    chinese = g.eligible_characters(fonts=["wqy-zenhei"], max_frequency=5)
    both = g.eligible_characters(fonts=["ipa-gothic", "wqy-zenhei"], max_frequency=5)
    cps = lambda table: {e.codepoint for members in table.values() for e in members}  # noqa: E731
    ipa = g.font_codepoints(str(g.font_path("ipa-gothic")))
    # The Japanese font lacks simplified Chinese characters (们, 说 ...): they are left out.
    assert ord("们") in cps(chinese) and ord("们") not in cps(japanese)
    assert cps(both) == cps(japanese) & cps(chinese) and cps(both) <= ipa


def test_renders_are_cached_by_their_settings(tmp_path, monkeypatch):
    _need_glyph_packages()
    cache = str(tmp_path / "cache")
    first = create_dataset("glyphs", cache_dir=cache, **TINY)

    def no_render(*args, **kwargs):
        raise AssertionError("rendered although the cache holds these settings")

    monkeypatch.setattr(glyph_render, "render_glyphs", no_render)
    again = create_dataset("glyphs", cache_dir=cache, **TINY)
    assert torch.equal(first.train.inputs, again.train.inputs)
    with pytest.raises(AssertionError, match="rendered although"):
        create_dataset("glyphs", cache_dir=cache, **{**TINY, "image_size": 20})


def test_renders_are_seeded_shifts_of_the_glyph(tiny):
    first, second = tiny.train.inputs[0].float(), tiny.train.inputs[1].float()  # renders 0, 1
    assert not torch.equal(first, second)
    assert abs(first.sum() - second.sum()) / first.sum() < 0.35  # the same glyph, moved / scaled


def test_missing_font_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(glyph_fonts, "FONT_DIR", tmp_path / "no-fonts")
    with pytest.raises(FileNotFoundError, match=r"apt-get install fonts-arphic-ukai"):
        create_dataset("glyphs", cache_dir=str(tmp_path), **TINY)


def test_missing_unicode_data_names_the_package(tmp_path, monkeypatch):
    _need_glyph_packages()
    monkeypatch.setattr(glyph_unihan, "UNICODE_DIR", tmp_path / "no-unicode")
    with pytest.raises(FileNotFoundError, match=r"apt-get install unicode-data"):
        create_dataset("glyphs", cache_dir=str(tmp_path / "fresh"), **TINY)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"test_fonts": ["ukai"]}, "overlap in \\['ukai'\\]"),
        ({"fonts": ["comic-sans"]}, "unknown glyph font 'comic-sans'"),
        ({"embedding": "clip"}, "unknown glyph embedding 'clip'"),
        ({"radicals": 500}, "only \\d+ radicals have 3 characters"),
        ({"jitter": 0.7}, "jitter=0.7"),
    ],
)
def test_bad_options_are_named(tmp_path, options, named):
    _need_glyph_packages()
    with pytest.raises(ValueError, match=named):
        create_dataset("glyphs", cache_dir=str(tmp_path), **{**TINY, **options})


def test_heldout_embedding_never_sees_a_sweep_radical(tmp_path, monkeypatch):
    _need_glyph_packages()
    options = {**TINY, "embedding": "heldout", "heldout_chars": 6}
    by_radical = g.eligible_characters(fonts=["ukai", "uming", "wqy-zenhei"], max_frequency=5)
    chosen = g.select_characters(by_radical, radicals=4, chars_per_radical=3)
    held = g.heldout_characters(by_radical, chosen, 6)
    assert len(held) == 6 and not {e.radical for e in held} & {e.radical for e in chosen}
    ds = create_dataset("glyphs", cache_dir=str(tmp_path), **options)
    emb = ds.class_embeddings()
    assert emb.shape[0] == 24 and emb.ndim == 2 and np.isfinite(emb).all()
    # Cached: a second dataset with the same settings does not train again.
    import trainables.glyph_embeddings as ge

    monkeypatch.setattr(ge, "heldout_cnn_embeddings", lambda *a, **k: 1 / 0)
    again = create_dataset("glyphs", cache_dir=str(tmp_path), **options).class_embeddings()
    assert np.array_equal(emb, again)


# ---- font folds (pure: no font file is read) --------------------------------------------
SHIPPED_POOL = [*g.DEFAULT_TRAIN_FONTS, *g.DEFAULT_TEST_FONTS]
EXTENDED_POOL = [*SHIPPED_POOL, *g.EXTRA_TRAIN_FONTS, "noto-sans-bold", "kouzan-gyosho"]


@pytest.mark.parametrize(("pool", "folds"), [(SHIPPED_POOL, 2), (EXTENDED_POOL, 3)])
def test_folds_keep_siblings_together_and_test_fonts_unseen(pool, folds):
    assert g.max_folds(pool) == folds
    tested = []
    for k in range(folds):
        split = g.font_fold(pool, folds, k)
        assert [g.FONTS[f].style for f in split.test] == ["sans", "ming", "kai"]
        assert not set(split.test) & set(split.train)  # every test font unseen
        # No family on both sides: a test font's siblings are dropped, never trained on.
        assert not {g.family(f) for f in split.test} & {g.family(f) for f in split.train}
        assert set(split.train) | set(split.test) | set(split.dropped) == set(pool)
        tested += split.test
    assert len(tested) == len(set(tested))  # the folds' test sets are disjoint
    # The two WenQuanYi faces: the test one's sibling is left out of training.
    first = g.font_fold(pool, folds, 0)
    assert first.test == g.DEFAULT_TEST_FONTS and first.dropped[:1] == ("wqy-microhei",)
    if "noto-sans" in first.train:
        assert "noto-sans-bold" in first.train
    noto_fold = [
        g.font_fold(pool, folds, k)
        for k in range(folds)
        if "noto-sans" in g.font_fold(pool, folds, k).test
    ]
    for split in noto_fold:
        assert "noto-sans-bold" in split.dropped


def test_fold_errors_name_the_option_and_the_accepted_values():
    with pytest.raises(ValueError, match=r"folds=3 needs 3 kai fonts .* add one of: kouzan"):
        g.font_fold(SHIPPED_POOL, 3, 0)
    with pytest.raises(ValueError, match=r"fold=2 is out of range: accepted 0 \.\. 1"):
        g.font_fold(SHIPPED_POOL, 2, 2)


# ---- options checked without building anything ----------------------------------------
@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"renders_per_font": -1}, r"renders_per_font=-1 is out of range: accepted in \[1, 16\]"),
        ({"renders_per_font": 17}, r"renders_per_font=17 is out of range"),
        ({"radicals": 0}, r"radicals=0 is out of range: accepted >= 1"),
        ({"val_renders_per_font": -2}, r"val_renders_per_font=-2 is out of range: accepted in"),
        ({"chars_per_radical": 2.5}, r"chars_per_radical=2.5 must be an integer"),
        ({"image_size": True}, r"image_size=True must be an integer"),
        ({"stroke": -0.1}, r"stroke=-0.1 must be a number in \[0.0, 2.0\]"),
        ({"jitter": "big"}, r"jitter='big' must be a number in \[0.0, 0.5\)"),
        ({"folds": 2, "fold": 2}, r"fold=2 is out of range: accepted 0 \.\. 1"),
        ({"folds": 2, "fold": -1}, r"fold=-1 is out of range: accepted >= 0"),
        ({"fold": 1}, r"fold=1 needs folds"),
        ({"folds": 3}, r"folds=3 needs 3 kai fonts"),
        ({"font": ["ukai"]}, r"unknown glyphs option 'font'; accepted: cache_dir, chars_per"),
        ({"fonts": "ukai"}, r"fonts='ukai' must be a non-empty list of font names"),
        ({"test_fonts": ["ukai", "comic"]}, r"unknown glyph font 'comic'; known: hanazono"),
        ({"test_fonts": ["ukai"]}, r"overlap in \['ukai'\]"),
        ({"embedding": "clip"}, r"unknown glyph embedding 'clip'; known: heldout, pixels"),
    ],
)
def test_options_are_checked_without_touching_the_disk(tmp_path, monkeypatch, options, named):
    monkeypatch.setattr(glyph_fonts, "FONT_DIR", tmp_path / "no-fonts")  # nothing may be read
    with pytest.raises(ValueError, match=named):
        validate_dataset_options("glyphs", options)
    assert list(tmp_path.iterdir()) == []
    validate_dataset_options("glyphs", {"folds": 2, "fold": 1, "renders_per_font": 16})


def test_every_dataset_has_the_options_check():
    validate_dataset_options("synthetic", {"train_per_leaf": 8})
    with pytest.raises(ValueError, match=r"unknown synthetic option 'train_per_class'; accepted"):
        validate_dataset_options("synthetic", {"train_per_class": 8})
    with pytest.raises(RuntimeError, match="Unknown dataset"):
        validate_dataset_options("no-such-data", {})


# ---- renders: nested, stroke width, validation, folds, 48 px ---------------------------
def test_renders_are_nested_and_stroke_changes_are_seeded():
    _need_glyph_packages(fonts=("uming",))
    cps = [ord(c) for c in "海話"]
    kw = {"image_size": 24, "jitter": 0.08, "seed": 3, "stroke": 0.5}
    many = g.render_glyphs(cps, "uming", renders=16, **kw)
    few = g.render_glyphs(cps, "uming", renders=4, **kw)
    for c in range(2):  # the first 4 of 16 are the 4-render set
        assert np.array_equal(many[c * 16 : c * 16 + 4], few[c * 4 : c * 4 + 4])
    assert np.array_equal(g.render_glyphs(cps, "uming", renders=16, **kw), many)  # seeded
    # The same supersampled renders with no stroke change (a change of 1e-9 px rounds to 0).
    plain = g.render_glyphs(cps, "uming", renders=16, **{**kw, "stroke": 1e-9})
    ink = many.reshape(32, -1).astype(float).sum(1) / plain.reshape(32, -1).astype(float).sum(1)
    changes = [
        g.render_params("uming", cps[i // 16], i % 16, jitter=0.08, stroke=0.5, seed=3)
        for i in range(32)
    ]
    thicker = [r for r, p in zip(ink, changes, strict=True) if p.stroke > 0.2]
    thinner = [r for r, p in zip(ink, changes, strict=True) if p.stroke < -0.2]
    assert thicker and thinner and min(thicker) > 1.1 and max(thinner) < 0.97
    assert min(ink) >= glyph_render.ERODE_KEEP  # erosion never wipes strokes out


def test_validation_renders_are_held_out_renders_of_the_training_glyphs(tiny, tmp_path):
    every = create_dataset("glyphs", cache_dir=str(tmp_path), **{**TINY, "val_glyphs": 1.0})
    assert torch.equal(every.train.inputs, tiny.train.inputs)  # training data unchanged
    # val_glyphs=1: every training glyph has a validation render, none a training render.
    assert sorted(every.val.leaf.tolist()) == sorted(set(every.train.leaf.tolist()))
    for i, leaf in enumerate(every.val.leaf):
        renders = every.train.inputs[every.train.leaf == leaf]
        assert not any(torch.equal(every.val.inputs[i], r) for r in renders)
    # The default quarter is a subset of those renders (the same images).
    assert set(tiny.val.leaf) < set(every.val.leaf)
    for i, leaf in enumerate(tiny.val.leaf):
        assert torch.equal(tiny.val.inputs[i], every.val.inputs[every.val.leaf == leaf][0])
    # The trial validates on that split and trains on the whole train split.
    from trainables.trial import _data_split

    data = _data_split({"seed": 0, "val_fraction": 0.1, "data_fraction": 1.0}, every)
    assert len(data.val_idx) == len(every.val) and len(data.train_idx) == len(every.train)
    none = create_dataset("glyphs", cache_dir=str(tmp_path), **{**TINY, "val_renders_per_font": 0})
    assert none.val is None  # then the trial carves val_fraction from the train split


def test_folds_build_datasets_whose_test_fonts_are_unseen(tmp_path):
    fonts = ("ukai", "uming", "wqy-microhei", "wqy-zenhei", "ipa-gothic", "hanazono", "tw-kai")
    _need_glyph_packages(fonts=fonts)
    options = {**TINY, "fonts": list(fonts), "test_fonts": [], "renders_per_font": 1}
    options["test_fonts"] = [options["fonts"].pop()]  # tw-kai
    seen = []
    for k in range(2):
        ds = create_dataset("glyphs", cache_dir=str(tmp_path), folds=2, fold=k, **options)
        assert not set(ds.meta["test_fonts"]) & set(ds.meta["fonts"])
        assert len(ds.test) == 12 * 3 and len(ds.train) == 12 * len(ds.meta["fonts"])
        seen.append(ds.meta["characters"])
    assert seen[0] == seen[1]  # the same characters in every fold
    first = create_dataset("glyphs", cache_dir=str(tmp_path), folds=2, fold=0, **options)
    assert first.meta["dropped_fonts"] == ["wqy-microhei"]


def test_48_px_stroke_and_16_renders_are_cached_by_every_setting(tmp_path, monkeypatch):
    _need_glyph_packages()
    options = {**TINY, "image_size": 48, "renders_per_font": 16, "stroke": 0.35}
    ds = create_dataset("glyphs", cache_dir=str(tmp_path), **options)
    assert ds.input_shape == (1, 48, 48) and len(ds.train) == 12 * 2 * 16
    small = create_dataset("glyphs", cache_dir=str(tmp_path), **{**options, "renders_per_font": 4})
    for font in range(2):  # nested at the dataset level too: per glyph, the first 4 of 16
        big = ds.train.inputs[font * 12 * 16 : (font + 1) * 12 * 16].reshape(12, 16, 48, 48)
        part = small.train.inputs[font * 12 * 4 : (font + 1) * 12 * 4].reshape(12, 4, 48, 48)
        assert torch.equal(big[:, :4], part)

    def no_render(*args, **kwargs):
        raise AssertionError("rendered although the cache holds these settings")

    monkeypatch.setattr(glyph_render, "render_glyphs", no_render)
    create_dataset("glyphs", cache_dir=str(tmp_path), **options)
    with pytest.raises(AssertionError, match="rendered although"):
        create_dataset("glyphs", cache_dir=str(tmp_path), **{**options, "stroke": 0.25})


# ---- Fashion-MNIST ---------------------------------------------------------------------
def test_fashion_mnist_reads_idx_files_with_torchvision(tmp_path):
    root = fixtures.write_fashion_mnist(tmp_path / "fmnist", per_class=3, test_per_class=2)
    ds = create_dataset("fashion_mnist", root=str(root), cache_dir=str(tmp_path / "cache"))
    assert ds.hierarchy.level_names == ["category", "class"] and ds.default_target == "category"
    assert ds.hierarchy.level_sizes() == [4, 10]
    assert len(ds.train) == 30 and len(ds.test) == 20
    assert ds.train.inputs.shape == (30, 1, 28, 28) and ds.train.inputs.dtype == torch.uint8
    assert np.bincount(ds.train.leaf).tolist() == [3] * 10
    # Categories: tops, bottoms, footwear, bags.
    names = ds.hierarchy.node_names[0]
    assert [names[c] for c in CATEGORY_OF_CLASS[[0, 1, 5, 8]]] == [
        "tops",
        "bottoms",
        "footwear",
        "bags",
    ]


def test_fashion_mnist_missing_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        create_dataset("fashion_mnist", root=str(tmp_path / "nowhere"))


def test_installed_fashion_mnist_has_the_official_splits(tmp_path):
    fixtures.require_system_files(
        Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz", package="dataset-fashion-mnist"
    )
    ds = create_dataset(
        "fashion_mnist", train_per_class=50, test_per_class=20, cache_dir=str(tmp_path)
    )
    assert np.bincount(ds.train.leaf).tolist() == [50] * 10
    assert np.bincount(ds.test.leaf).tolist() == [20] * 10
    full = create_dataset("fashion_mnist", cache_dir=str(tmp_path))
    assert len(full.train) == 60000 and len(full.test) == 10000


def test_fashion_mnist_styles_are_a_finer_level_inside_each_class(tmp_path):
    root = fixtures.write_fashion_mnist(tmp_path / "fmnist", per_class=6, test_per_class=3)
    ds = create_dataset(
        "fashion_mnist", root=str(root), styles_per_class=2, cache_dir=str(tmp_path / "c")
    )
    h = ds.hierarchy
    assert h.level_names == ["category", "class", "style"] and h.level_sizes() == [4, 10, 20]
    # Styles nest in the official class of every image, train and test.
    for split, per_class in ((ds.train, 6), (ds.test, 3)):
        classes = h.mapping(h.level_index("class"))[split.leaf]
        assert np.bincount(classes).tolist() == [per_class] * 10
    assert set(np.unique(ds.train.leaf)) == set(range(20))  # kMeans leaves no style empty
    with pytest.raises(ValueError, match="fewer than styles_per_class=7"):
        create_dataset("fashion_mnist", root=str(root), styles_per_class=7, cache_dir=str(tmp_path))


@pytest.mark.parametrize("size", [20, 28, 32])
def test_any_image_size_gets_a_tile_that_divides_it(tmp_path, size):
    _need_glyph_packages()
    ds = create_dataset("glyphs", cache_dir=str(tmp_path), **{**TINY, "image_size": size})
    assert ds.input_shape == (1, size, size) and size % ds.patch_size == 0
