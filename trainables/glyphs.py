"""CJK glyphs: real characters rendered from installed fonts, under the Unicode radical taxonomy.

This module assembles the dataset from its parts and checks its options:
the Unicode Han database (trainables/glyph_unihan.py), the fonts and font folds
(trainables/glyph_fonts.py), the character selection and hierarchy
(trainables/glyph_taxonomy.py), the renderer and its cache
(trainables/glyph_render.py) and the cluster embedding
(trainables/glyph_embeddings.py). Their public names are re-exported here.

The paper's setting on real images that anyone can install here (Debian
packages, no download): characters that share a Kangxi radical share a
visual component (the common feature); each character adds its own
components (the rarer features).

Levels, coarsest first (sizes for the default 40 radicals x 8 characters):
``radical_strokes`` (5 bands of the radical's own strokes), ``radical`` (the
default target, 40), ``radical_residual`` (radical + residual stroke band),
``character`` (320) and ``glyph`` (character x training font, the too-fine
extreme).

Splits. Train: `renders_per_font` renders of each selected character in each
training font (nested: the first r of 16 are the r-render set). Validation:
`val_renders_per_font` further renders (render indices 16 and up of the same
stream, so never a training render) of a seeded `val_glyphs` share of the
training glyphs: the dataset's own validation split (`Dataset.val`).
Test: every selected character in the `test_fonts`, which no training example
uses: generalisation to an unseen type design. A test example's leaf is its character's glyph in the first
training font (only the character and its ancestors are used at test time).
`folds=K, fold=k` replaces the explicit font split by fold k of K over the
font pool (fonts + test_fonts): one sans, one ming and one kai test design,
siblings never on both sides.

Example:
    >>> ds = create_dataset("glyphs", radicals=4, chars_per_radical=3,
    ...                     fonts=["ukai", "uming"], test_fonts=["wqy-zenhei"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainables.data import Dataset, Split, cache_root, register_dataset, register_option_check
from trainables.glyph_embeddings import GLYPH_EMBEDDINGS, HELDOUT_SETTINGS, glyph_embeddings
from trainables.glyph_fonts import (  # noqa: F401 (re-exported)
    DEFAULT_TEST_FONTS,
    DEFAULT_TRAIN_FONTS,
    EXTRA_TRAIN_FONTS,
    FOLD_ORDER,
    FOLD_STYLES,
    FONT_DIR,
    FONTS,
    FontFold,
    FontSource,
    family,
    font_codepoints,
    font_fold,
    font_path,
    max_folds,
)
from trainables.glyph_render import (  # noqa: F401 (re-exported)
    MAX_RENDERS,
    RENDER_VERSION,
    cache_key,
    cached_renders,
    render_glyphs,
    render_params,
)
from trainables.glyph_taxonomy import (  # noqa: F401 (re-exported)
    LEVEL_NAMES,
    RESIDUAL_BANDS,
    STROKE_BANDS,
    cached_selection,
    eligible_characters,
    glyph_hierarchy,
    heldout_characters,
    select_characters,
)
from trainables.glyph_unihan import (  # noqa: F401 (re-exported)
    UNICODE_DIR,
    UNICODE_PACKAGE,
    HanEntry,
    han_entries,
    missing_package_error,
    radical_strokes,
)

# ---- options --------------------------------------------------------------------------
# name -> (lowest, highest): the range accepted (highest None: unbounded).
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "radicals": (1, None),
    "chars_per_radical": (1, None),
    "max_frequency": (1, 5),
    "image_size": (8, 256),
    "renders_per_font": (1, MAX_RENDERS),
    "test_renders_per_font": (1, MAX_RENDERS),
    "val_renders_per_font": (0, MAX_RENDERS),
    "render_seed": (0, None),
    "heldout_chars": (0, None),
    "folds": (1, None),
    "fold": (0, None),
}
# name -> (lowest, highest, whether highest is included)
_FLOAT_RANGES: dict[str, tuple[float, float, bool]] = {
    "jitter": (0.0, 0.5, False),
    "stroke": (0.0, 2.0, True),
    "val_glyphs": (0.0, 1.0, True),
}
_FONT_LISTS = ("fonts", "test_fonts")
GLYPH_OPTIONS = (
    *_INT_RANGES,
    *_FLOAT_RANGES,
    *_FONT_LISTS,
    "embedding",
    "cache_dir",
)


def _range_text(low: float, high: float | None, closed: bool = True) -> str:
    if high is None:
        return f">= {low}"
    return f"in [{low}, {high}{']' if closed else ')'}"


def _check_int(name: str, value: Any) -> None:
    low, high = _INT_RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"glyphs option {name}={value!r} must be an integer {_range_text(low, high)}"
        )
    if value < low or (high is not None and value > high):
        raise ValueError(
            f"glyphs option {name}={value} is out of range: accepted {_range_text(low, high)}"
        )


def _check_float(name: str, value: Any) -> None:
    low, high, closed = _FLOAT_RANGES[name]
    ok_type = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok_type or not (low <= value < high or (closed and value == high)):
        raise ValueError(
            f"glyphs option {name}={value!r} must be a number {_range_text(low, high, closed)}"
        )


def _check_fonts(name: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(
            f"glyphs option {name}={value!r} must be a non-empty list of font names; "
            f"accepted names: {', '.join(sorted(FONTS))}"
        )
    for font in value:
        if font not in FONTS:
            raise ValueError(
                f"glyphs option {name}: unknown glyph font {font!r}; known: "
                f"{', '.join(sorted(FONTS))}"
            )
    if len(set(value)) != len(value):
        raise ValueError(f"glyphs option {name}={list(value)} names a font twice")
    return list(value)


@register_option_check("glyphs")
def validate_options(options: Mapping[str, Any]) -> None:
    """Check glyph dataset options without reading a font or rendering anything.

    Raises ValueError naming the option and the accepted values: an unknown
    option, a wrong type, a value out of range (counts, `fold` outside
    0 .. folds-1, `fold` without `folds`, more folds than the font pool allows),
    an unknown font or embedding, overlapping training and test fonts.
    """
    unknown = sorted(set(options) - set(GLYPH_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown glyphs option {unknown[0]!r}; accepted: {', '.join(sorted(GLYPH_OPTIONS))}"
        )
    for name, value in options.items():
        if name in _INT_RANGES and not (name in ("folds", "fold") and value is None):
            _check_int(name, value)
        elif name in _FLOAT_RANGES:
            _check_float(name, value)
    fonts = _check_fonts("fonts", options.get("fonts", DEFAULT_TRAIN_FONTS))
    test_fonts = _check_fonts("test_fonts", options.get("test_fonts", DEFAULT_TEST_FONTS))
    overlap = sorted(set(fonts) & set(test_fonts))
    if overlap:
        raise ValueError(
            f"glyphs options fonts and test_fonts overlap in {overlap}: test fonts must be unseen"
        )
    embedding = options.get("embedding", "heldout")
    if embedding not in GLYPH_EMBEDDINGS:
        raise ValueError(
            f"glyphs option embedding: unknown glyph embedding {embedding!r}; known: "
            f"{', '.join(GLYPH_EMBEDDINGS)}"
        )
    if embedding == "heldout" and options.get("heldout_chars", 400) < 2:
        raise ValueError("glyphs option heldout_chars must be >= 2 with embedding=heldout")
    folds, fold = options.get("folds"), options.get("fold")
    if fold is not None and folds is None:
        raise ValueError(f"glyphs option fold={fold} needs folds (the number of font folds)")
    if folds is not None:
        font_fold(fonts + test_fonts, folds, 0 if fold is None else fold)


def resolve_fonts(
    fonts: Sequence[str], test_fonts: Sequence[str], folds: int | None, fold: int | None
) -> FontFold:
    """The training and test fonts: the explicit split, or fold `fold` of `folds` over both lists."""
    if folds is None:
        return FontFold(train=tuple(fonts), test=tuple(test_fonts), dropped=())
    return font_fold([*fonts, *test_fonts], folds, 0 if fold is None else fold)


def _glyph_batch_transform(batch: torch.Tensor, train: bool) -> torch.Tensor:
    # Ink in [0, 1], centred: the glyphs are ~15% ink, so 0.5 is no worse a
    # centre than the data mean and keeps the transform independent of the split.
    return batch.float().div_(127.5).sub_(1.0)


def _glyph_leaves(n_chars: int, n_fonts: int, per_font: int) -> np.ndarray:
    """Leaf of each render in font-major, character-major, render order (leaf = char * fonts + font)."""
    return np.concatenate(
        [np.repeat(np.arange(n_chars) * n_fonts + f, per_font) for f in range(n_fonts)]
    )


# ---- the dataset --------------------------------------------------------------------------
@register_dataset
def glyphs(
    *,
    radicals: int = 40,
    chars_per_radical: int = 8,
    max_frequency: int = 5,
    fonts: Sequence[str] = DEFAULT_TRAIN_FONTS,
    test_fonts: Sequence[str] = DEFAULT_TEST_FONTS,
    folds: int | None = None,
    fold: int | None = None,
    image_size: int = 32,
    renders_per_font: int = 2,
    test_renders_per_font: int = 1,
    val_renders_per_font: int = 1,
    val_glyphs: float = 0.25,
    jitter: float = 0.08,
    stroke: float = 0.0,
    render_seed: int = 0,
    embedding: str = "heldout",
    heldout_chars: int = 400,
    cache_dir: str | None = None,
) -> Dataset:
    """CJK glyphs under the radical taxonomy, split by font (module docstring).

    Args:
        radicals, chars_per_radical: how many radicals (the richest in
            characters) and characters per radical (the most frequent).
        max_frequency: kFrequency cut-off, 1 (the ~120 most common) .. 5 (all ~5,000).
        fonts / test_fonts: training and test fonts (names of `FONTS`; disjoint).
            The characters are those every font of both lists maps.
        folds, fold: when set, fold `fold` (0 .. folds-1) of `folds` splits of
            fonts + test_fonts replaces the explicit split (`font_fold`).
        image_size: pixels per side (8 .. 256; 32 and 48 are the planned sizes).
        renders_per_font: 1 .. 16 nested renders of each training glyph (render
            0 plain, the others shifted and scaled by up to `jitter` of the image
            and, with `stroke` > 0, their strokes changed by up to `stroke`
            output pixels per side, thicker or thinner); test_renders_per_font
            likewise for test glyphs (another seed); val_renders_per_font:
            0 .. 16 held-out renders of a training glyph for validation, for a
            seeded `val_glyphs` share (0 .. 1) of the training glyphs.
        render_seed: seeds every render stream.
        embedding: the per-leaf embedding behind cluster hierarchies
            (trainables/glyph_embeddings.py): "heldout" or "pixels".
        cache_dir: where renders are cached (default ~/.cache/granularity/glyphs).
    """
    # The arguments as given (locals() holds only them here); None: not set.
    options = {k: v for k, v in locals().items() if v is not None}
    validate_options(options)
    split = resolve_fonts(fonts, test_fonts, folds, fold)
    train_fonts, eval_fonts = list(split.train), list(split.test)
    pool = [*fonts, *test_fonts]
    for name in pool:
        font_path(name)  # missing package, before any work
    cache = Path(cache_dir) if cache_dir else cache_root() / "glyphs"
    entries, heldout, strokes = cached_selection(
        fonts=pool,
        radicals=radicals,
        chars_per_radical=chars_per_radical,
        max_frequency=max_frequency,
        heldout=heldout_chars if embedding == "heldout" else 0,
        cache_dir=cache,
    )
    codepoints = [e.codepoint for e in entries]
    hierarchy = glyph_hierarchy(entries, train_fonts, strokes)
    common = dict(
        image_size=image_size, jitter=float(jitter), stroke=float(stroke), cache_dir=cache
    )

    def renders(
        chars: Sequence[int], which: Sequence[str], per_font: int, seed: int, first: int = 0
    ) -> np.ndarray:
        if per_font == 0:
            return np.zeros((0, 1, image_size, image_size), dtype=np.uint8)
        images = cached_renders(chars, which, renders=per_font, seed=seed, first=first, **common)
        return np.concatenate([images[f] for f in which])[:, None]

    n_chars, n_fonts = len(entries), len(train_fonts)
    train = Split(
        leaf=_glyph_leaves(n_chars, n_fonts, renders_per_font),
        inputs=torch.from_numpy(renders(codepoints, train_fonts, renders_per_font, render_seed)),
    )
    # Validation: renders MAX_RENDERS.. of the training stream (never a training
    # render) of a seeded `val_glyphs` share of the training glyphs: validation
    # runs every epoch, so all glyphs at 1 render would cost a third more per epoch.
    val_leaf = _glyph_leaves(n_chars, n_fonts, val_renders_per_font)
    chosen = np.random.default_rng([render_seed, 7]).random(n_chars * n_fonts) < val_glyphs
    keep = np.flatnonzero(chosen[val_leaf])
    val_x = renders(codepoints, train_fonts, val_renders_per_font, render_seed, MAX_RENDERS)
    val = Split(leaf=val_leaf[keep], inputs=torch.from_numpy(val_x[keep]))
    test = Split(
        leaf=np.tile(
            np.repeat(np.arange(n_chars) * n_fonts, test_renders_per_font), len(eval_fonts)
        ),
        inputs=torch.from_numpy(
            renders(codepoints, eval_fonts, test_renders_per_font, render_seed + 1)
        ),
    )
    settings_key = cache_key(
        [radicals, chars_per_radical, max_frequency, train_fonts, eval_fonts, image_size],
        [renders_per_font, jitter, stroke, render_seed, heldout_chars, HELDOUT_SETTINGS],
    )
    return Dataset(
        name="glyphs",
        hierarchy=hierarchy,
        default_target="radical",
        train=train,
        test=test,
        input_shape=(1, image_size, image_size),
        # twolayer's tile: the largest divisor of the side up to an eighth of it.
        patch_size=max(d for d in range(1, max(1, image_size // 8) + 1) if image_size % d == 0),
        batch_transform=_glyph_batch_transform,
        embed=lambda: glyph_embeddings(
            embedding,
            train=train,
            num_leaves=hierarchy.num_leaves,
            heldout=lambda: (
                renders([e.codepoint for e in heldout], train_fonts, renders_per_font, render_seed),
                np.tile(np.repeat(np.arange(len(heldout)), renders_per_font), n_fonts),
            ),
            cache_file=cache / f"embedding-{embedding}-{settings_key}.npy",
            transform=_glyph_batch_transform,
        ),
        meta={
            "characters": "".join(chr(cp) for cp in codepoints),
            "fonts": train_fonts,
            "test_fonts": eval_fonts,
            "dropped_fonts": list(split.dropped),
            "folds": folds,
            "fold": fold,
            "embedding": embedding,
        },
        leaf_level="character",  # coherent classes: derived kinds move characters whole
        val=val if len(val) else None,
    )
