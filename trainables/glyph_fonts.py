"""The fonts the glyph dataset draws with, and its font folds (which designs are held out).

Every font is a Debian package (nothing downloads). Each has a style (sans, ming,
kai, pen) and a family: faces of one design (the two WenQuanYi faces, a
regular and a bold weight, a designer's brush styles) share a family, and a
fold never puts one family on both sides of a split, so every test design is
unseen in training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from trainables.glyph_unihan import missing_package_error

FONT_DIR = Path(os.environ.get("GRANULARITY_FONT_DIR", "/usr/share/fonts"))


@dataclass(frozen=True)
class FontSource:
    """A font the dataset can draw with: its Debian package and file (relative to FONT_DIR).

    `family`: the design it belongs to (defaults to the font's own name in `FONTS`).
    """

    package: str
    file: str
    index: int = 0  # face index inside a .ttc collection
    style: str = ""
    family: str = ""


# Independently designed faces, grouped by style so that every test style has
# relatives in training (a sans test font next to sans training fonts ...).
# Noto CJK faces are the Traditional Chinese ones (index 3), the forms kFrequency
# (Big5 frequencies) counts. Vetting of each package: docs/REAL_DATA.md.
FONTS: dict[str, FontSource] = {
    "ukai": FontSource("fonts-arphic-ukai", "truetype/arphic/ukai.ttc", 0, "kai"),
    "uming": FontSource("fonts-arphic-uming", "truetype/arphic/uming.ttc", 0, "ming"),
    "wqy-microhei": FontSource(
        "fonts-wqy-microhei", "truetype/wqy/wqy-microhei.ttc", 0, "sans", "wqy"
    ),
    "wqy-zenhei": FontSource("fonts-wqy-zenhei", "truetype/wqy/wqy-zenhei.ttc", 0, "sans", "wqy"),
    "ipa-gothic": FontSource("fonts-ipafont-gothic", "opentype/ipafont-gothic/ipag.ttf", 0, "sans"),
    "ipa-mincho": FontSource("fonts-ipafont-mincho", "opentype/ipafont-mincho/ipam.ttf", 0, "ming"),
    "klee": FontSource("fonts-klee", "truetype/klee/KleeOne-Regular.ttf", 0, "pen"),
    "seto": FontSource("fonts-seto", "truetype/seto/setofont.ttf", 0, "pen"),
    "hanazono": FontSource("fonts-hanazono", "truetype/hanazono/HanaMinA.ttf", 0, "ming"),
    "tw-kai": FontSource("fonts-cns11643-kai", "truetype/cns11643/TW-Kai-98_1.ttf", 0, "kai"),
    "tw-sung": FontSource("fonts-cns11643-sung", "truetype/cns11643/TW-Sung-98_1.ttf", 0, "ming"),
    "motoya-cedar": FontSource(
        "fonts-motoya-l-cedar", "truetype/motoya-l-cedar/MTLc3m.ttf", 0, "sans"
    ),
    "noto-sans": FontSource(
        "fonts-noto-cjk", "opentype/noto/NotoSansCJK-Regular.ttc", 3, "sans", "noto-sans"
    ),
    "noto-sans-bold": FontSource(
        "fonts-noto-cjk", "opentype/noto/NotoSansCJK-Bold.ttc", 3, "sans", "noto-sans"
    ),
    "noto-serif": FontSource(
        "fonts-noto-cjk", "opentype/noto/NotoSerifCJK-Regular.ttc", 3, "ming", "noto-serif"
    ),
    "noto-serif-bold": FontSource(
        "fonts-noto-cjk", "opentype/noto/NotoSerifCJK-Bold.ttc", 3, "ming", "noto-serif"
    ),
    "kouzan": FontSource(
        "fonts-kouzan-mouhitsu", "truetype/kouzan-mouhitsu/kouzan-mouhitsu.ttf", 0, "kai", "kouzan"
    ),
    "kouzan-gyosho": FontSource(
        "fonts-kouzan-mouhitsu",
        "truetype/kouzan-mouhitsu/kouzan-mouhitsu-gyosho.ttf",
        0,
        "kai",
        "kouzan",
    ),
}
DEFAULT_TRAIN_FONTS = (
    "ukai",
    "uming",
    "wqy-microhei",
    "ipa-gothic",
    "ipa-mincho",
    "klee",
    "seto",
    "tw-sung",
    "motoya-cedar",
)
DEFAULT_TEST_FONTS = ("wqy-zenhei", "hanazono", "tw-kai")  # sans, ming, kai: unseen designs
# Every design the table adds to the shipped 12 (docs/REAL_DATA.md: licences, derivations).
EXTRA_TRAIN_FONTS = ("noto-sans", "noto-serif", "kouzan")

# A fold holds out one font of each of these styles.
FOLD_STYLES = ("sans", "ming", "kai")
# The order in which a style's designs are held out, fold 0 first: fold 0 of the
# shipped fonts is the shipped test split. A font not listed here (a sibling
# weight, the pen styles) is only ever trained on.
FOLD_ORDER: dict[str, tuple[str, ...]] = {
    "sans": ("wqy-zenhei", "ipa-gothic", "motoya-cedar", "noto-sans"),
    "ming": ("hanazono", "uming", "tw-sung", "ipa-mincho", "noto-serif"),
    "kai": ("tw-kai", "ukai", "kouzan"),
}


def family(name: str) -> str:
    """The design font `name` belongs to (its own name unless the table says otherwise)."""
    return FONTS[name].family or name


def font_path(name: str) -> Path:
    """The installed file of font `name`; FileNotFoundError names the package to install."""
    if name not in FONTS:
        raise ValueError(f"unknown glyph font {name!r}; known: {', '.join(sorted(FONTS))}")
    source = FONTS[name]
    path = FONT_DIR / source.file
    if not path.exists():
        raise missing_package_error(f"font {name!r}:", path, source.package)
    return path


@lru_cache(maxsize=64)
def font_codepoints(path: str, index: int = 0) -> frozenset[int]:
    """Codepoints the font's character map really maps (to a glyph other than .notdef)."""
    from fontTools.ttLib import TTFont

    font = TTFont(path, fontNumber=index, lazy=True)
    cmap = font.getBestCmap() or {}
    return frozenset(cp for cp, glyph in cmap.items() if glyph != ".notdef")


@dataclass(frozen=True)
class FontFold:
    """One split of a font pool: the fonts trained on, tested on, and left out.

    `dropped`: siblings of a test font (same family) that are in the pool: they
    are neither trained nor tested on, so the test design stays unseen.
    """

    train: tuple[str, ...]
    test: tuple[str, ...]
    dropped: tuple[str, ...]


def fold_candidates(pool: Sequence[str]) -> dict[str, list[str]]:
    """Per fold style, the pool's fonts that can be held out, in `FOLD_ORDER`."""
    return {style: [f for f in FOLD_ORDER[style] if f in pool] for style in FOLD_STYLES}


def max_folds(pool: Sequence[str]) -> int:
    """The most folds the pool allows: the fewest hold-out candidates of any fold style."""
    return min(len(c) for c in fold_candidates(pool).values())


def font_fold(pool: Sequence[str], folds: int, fold: int) -> FontFold:
    """Fold `fold` of `folds` over the fonts in `pool`: one sans, one ming, one kai test font.

    Fold k tests on the k-th hold-out candidate of each style (`FOLD_ORDER`);
    the rest of the pool trains, except the test fonts' siblings (dropped). The
    folds' test sets are disjoint, and no test font's family is trained on.

    Raises ValueError naming the style that has too few candidates, or a fold out of range.
    """
    candidates = fold_candidates(pool)
    for style, fonts in candidates.items():
        if len(fonts) < folds:
            choices = ", ".join(f for f in FOLD_ORDER[style] if f not in pool)
            raise ValueError(
                f"glyphs option folds={folds} needs {folds} {style} fonts that can be held out in fonts + "
                f"test_fonts, found {len(fonts)} ({', '.join(fonts) or 'none'}); add one of: "
                f"{choices or 'none left'}, or ask for folds <= {max_folds(pool)}"
            )
    if not 0 <= fold < folds:
        raise ValueError(
            f"glyphs option fold={fold} is out of range: accepted 0 .. {folds - 1} (folds={folds})"
        )
    test = tuple(candidates[style][fold] for style in FOLD_STYLES)
    held = {family(f) for f in test}
    train = tuple(f for f in pool if f not in test and family(f) not in held)
    dropped = tuple(f for f in pool if f not in test and family(f) in held)
    return FontFold(train=train, test=test, dropped=dropped)
