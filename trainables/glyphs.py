"""CJK glyphs: real characters rendered from installed fonts, under the Unicode radical taxonomy.

The paper's setting on real images that anyone can install here (Debian
packages, no download): characters that share a Kangxi radical share a
visual component (the common feature); each character adds its own
components (the rarer features). The taxonomy comes from the Unicode Han
database (`unicode-data`: `kRSUnicode` radical + residual strokes,
`kFrequency` the common characters, `CJKRadicals.txt` the radicals); the
images are the glyphs of several independently designed fonts.

Levels, coarsest first (sizes for the default 40 radicals x 8 characters):

- ``radical_strokes``: the radical's own stroke count, in 5 bands (1-2, 3, 4,
  5-6, 7+ strokes), the order of a Kangxi dictionary's radical index;
- ``radical`` (the default target, 40): the Kangxi radical; a simplified
  form (`'` in kRSUnicode, e.g. 讠 for 言) is its own radical, since it is
  another shape;
- ``radical_residual``: radical + the residual stroke count in 3 bands
  (0-4, 5-7, 8+): characters of one radical and similar complexity;
- ``character`` (320);
- ``glyph``: character x training font (2,880 with 9 training fonts), the
  too-fine extreme: one class per drawing of a character.

Why `radical` is the target: it is the level whose classes share a visual
component across many characters (the frequent feature), while the finer
levels are defined by the rest of each character (the rarer features), so
pretraining finer than the target can teach features the target labels
alone do not force. Coarser (`radical_strokes`) groups radicals that share
no component: the "too coarse" arm.

Train and test split by font: the test split is every selected character in
the `test_fonts`, which no training example uses, so the task is
generalisation to an unseen type design. A test example's leaf is its
character's glyph in the first training font (only the character and its
ancestors are used at test time). Only glyphs a font really has are used: the
codepoint must be in the font's character map and render ink; the
characters are those every chosen font has. Renders (``renders_per_font``
seeded small shifts and scales of each glyph) are cached on disk as one
`.npz` keyed by every setting that changes them.

Example:
    >>> ds = create_dataset("glyphs", radicals=4, chars_per_radical=3,
    ...                     fonts=["ukai", "uming"], test_fonts=["wqy-zenhei"])  # doctest: +SKIP
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from fileio import write_atomic
from hierarchies import Hierarchy
from trainables.data import Dataset, Split, cache_root, cached_array, register_dataset
from trainables.glyph_embeddings import GLYPH_EMBEDDINGS, HELDOUT_SETTINGS, glyph_embeddings

UNICODE_DIR = Path(os.environ.get("GRANULARITY_UNICODE_DIR", "/usr/share/unicode"))
FONT_DIR = Path(os.environ.get("GRANULARITY_FONT_DIR", "/usr/share/fonts"))
RENDER_VERSION = 1  # bump when the renderer changes what it draws


@dataclass(frozen=True)
class FontSource:
    """A font the dataset can draw with: its Debian package and file (relative to FONT_DIR)."""

    package: str
    file: str
    index: int = 0  # face index inside a .ttc collection
    style: str = ""


# Independently designed faces, grouped by style so that every test style has
# relatives in training (a sans test font next to sans training fonts ...).
FONTS: dict[str, FontSource] = {
    "ukai": FontSource("fonts-arphic-ukai", "truetype/arphic/ukai.ttc", 0, "kai"),
    "uming": FontSource("fonts-arphic-uming", "truetype/arphic/uming.ttc", 0, "ming"),
    "wqy-microhei": FontSource("fonts-wqy-microhei", "truetype/wqy/wqy-microhei.ttc", 0, "sans"),
    "wqy-zenhei": FontSource("fonts-wqy-zenhei", "truetype/wqy/wqy-zenhei.ttc", 0, "sans"),
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
UNICODE_PACKAGE = "unicode-data"
APT_HINT = "apt-get install"

# Kangxi radical stroke-count bands (the radical index of a dictionary is in this order).
# (lowest, highest, name); a residual can be -1 (a character drawn with part of its radical).
STROKE_BANDS = ((0, 2, "1-2"), (3, 3, "3"), (4, 4, "4"), (5, 6, "5-6"), (7, 99, "7+"))
RESIDUAL_BANDS = ((-9, 4, "0-4"), (5, 7, "5-7"), (8, 99, "8+"))
LEVEL_NAMES = ["radical_strokes", "radical", "radical_residual", "character", "glyph"]


def _band(value: int, bands: Sequence[tuple[int, int, str]]) -> int:
    return next(i for i, (lo, hi, _) in enumerate(bands) if lo <= value <= hi)


def missing_package_error(what: str, path: Path, package: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} {str(path)!r} does not exist: install the Debian package with "
        f"`{APT_HINT} {package}` (the glyph dataset never downloads)"
    )


# ---- the Unicode Han database ---------------------------------------------------
@dataclass(frozen=True)
class HanEntry:
    codepoint: int
    radical: str  # "85", or "149'" for a simplified radical form
    residual: int  # strokes beyond the radical
    frequency: int  # kFrequency: 1 (most common) .. 5


def _unihan_lines(name: str):
    path = UNICODE_DIR / name
    if not path.exists():
        plain = path.with_suffix("")  # some distributions ship the .txt uncompressed
        if plain.exists():
            path = plain
        else:
            raise missing_package_error("Unicode Han database file", path, UNICODE_PACKAGE)
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("U+"):
                cp, key, value = line.rstrip("\n").split("\t", 2)
                yield int(cp[2:], 16), key, value


@lru_cache(maxsize=2)
def han_entries(unicode_dir: str | None = None) -> tuple[HanEntry, ...]:
    """Every character with a kFrequency and a kRSUnicode value, most frequent first."""
    del unicode_dir  # part of the cache key only (tests point UNICODE_DIR elsewhere)
    frequency = {
        cp: int(v)
        for cp, k, v in _unihan_lines("Unihan_DictionaryLikeData.txt.bz2")
        if k == "kFrequency"
    }
    entries = []
    for cp, key, value in _unihan_lines("Unihan_IRGSources.txt.bz2"):
        if key != "kRSUnicode" or cp not in frequency:
            continue
        radical, _, residual = value.split()[0].partition(".")
        entries.append(HanEntry(cp, radical, int(residual), frequency[cp]))
    return tuple(sorted(entries, key=lambda e: (e.frequency, e.codepoint)))


@lru_cache(maxsize=2)
def radical_strokes(unicode_dir: str | None = None) -> dict[str, tuple[str, int]]:
    """Radical id ("85", "149'") -> (its character, its own stroke count) from CJKRadicals.txt."""
    del unicode_dir
    path = UNICODE_DIR / "CJKRadicals.txt"
    if not path.exists():
        raise missing_package_error("Unicode radicals file", path, UNICODE_PACKAGE)
    unified: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            number, _, ideograph = (part.strip() for part in line.split(";"))
            unified[number] = int(ideograph, 16)
    wanted = set(unified.values())
    totals = {
        cp: int(v.split()[0])
        for cp, k, v in _unihan_lines("Unihan_IRGSources.txt.bz2")
        if k == "kTotalStrokes" and cp in wanted
    }
    return {r: (chr(cp), totals.get(cp, 0)) for r, cp in unified.items()}


# ---- fonts ------------------------------------------------------------------------
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


# ---- selection ----------------------------------------------------------------------
def eligible_characters(*, fonts: Sequence[str], max_frequency: int) -> dict[str, list[HanEntry]]:
    """Radical -> its characters (most frequent first) that every font maps, kFrequency <= max."""
    covered: frozenset[int] | None = None
    for name in fonts:
        cps = font_codepoints(str(font_path(name)), FONTS[name].index)
        covered = cps if covered is None else covered & cps
    by_radical: dict[str, list[HanEntry]] = {}
    for entry in han_entries(str(UNICODE_DIR)):
        if entry.frequency <= max_frequency and entry.codepoint in (covered or ()):
            by_radical.setdefault(entry.radical, []).append(entry)
    return by_radical


def select_characters(
    by_radical: dict[str, list[HanEntry]], *, radicals: int, chars_per_radical: int
) -> list[HanEntry]:
    """The `chars_per_radical` most frequent characters of the `radicals` radicals richest in them.

    Raises ValueError when fewer radicals than asked have enough characters.
    """
    rich = [r for r, members in by_radical.items() if len(members) >= chars_per_radical]
    if len(rich) < radicals:
        raise ValueError(
            f"only {len(rich)} radicals have {chars_per_radical} characters in every font at this "
            f"kFrequency cut-off; ask for radicals <= {len(rich)}, fewer chars_per_radical, a "
            "larger max_frequency or fewer fonts"
        )
    # Richest radicals first; ties by how common their characters are, then radical id.
    rich.sort(key=lambda r: (-len(by_radical[r]), by_radical[r][0].frequency, r))
    chosen = sorted(rich[:radicals], key=_radical_order)
    return [e for r in chosen for e in by_radical[r][:chars_per_radical]]


def heldout_characters(
    by_radical: dict[str, list[HanEntry]], chosen: Sequence[HanEntry], count: int
) -> list[HanEntry]:
    """The `count` most frequent characters under radicals the sweep does not use.

    They train the embedding network of `embedding="heldout"`: no character of
    the sweep, and no character sharing a radical with one, is among them.
    """
    used = {e.radical for e in chosen}
    pool = [e for r, members in by_radical.items() if r not in used for e in members]
    pool.sort(key=lambda e: (e.frequency, e.codepoint))
    return pool[:count]


def cache_key(*parts: object) -> str:
    """Hash of the render version and `parts` (JSON): the name of a cached file."""
    payload = json.dumps([RENDER_VERSION, *parts], default=list).encode()
    return hashlib.sha256(payload).hexdigest()[:24]


def _file_stamp(path: Path) -> list:
    stat = path.stat()
    return [str(path), stat.st_size, int(stat.st_mtime)]


def cached_selection(
    *,
    fonts: Sequence[str],
    radicals: int,
    chars_per_radical: int,
    max_frequency: int,
    heldout: int,
    cache_dir: Path,
) -> tuple[list[HanEntry], list[HanEntry], dict[str, tuple[str, int]]]:
    """(sweep characters, held-out characters, radical -> (char, strokes)), cached on disk.

    Reading the Unicode database and 12 character maps takes ~4 s; every Ray
    worker builds the dataset, so the outcome is kept as JSON keyed by the
    settings and the files' sizes and times.
    """
    sources = [
        UNICODE_DIR / n for n in ("Unihan_IRGSources.txt.bz2", "Unihan_DictionaryLikeData.txt.bz2")
    ]
    stamps = [_file_stamp(p) for p in sources if p.exists()] + [
        _file_stamp(font_path(f)) for f in fonts
    ]
    key = cache_key(list(fonts), radicals, chars_per_radical, max_frequency, heldout, stamps)
    file = cache_dir / f"selection-{key}.json"
    if file.exists():
        try:
            saved = json.loads(file.read_text())
            return (
                [HanEntry(*e) for e in saved["chosen"]],
                [HanEntry(*e) for e in saved["heldout"]],
                {r: (c, int(n)) for r, (c, n) in saved["strokes"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError):  # damaged: select again
            pass
    by_radical = eligible_characters(fonts=fonts, max_frequency=max_frequency)
    chosen = select_characters(by_radical, radicals=radicals, chars_per_radical=chars_per_radical)
    held = heldout_characters(by_radical, chosen, heldout)
    all_strokes = radical_strokes(str(UNICODE_DIR))
    strokes = {r: all_strokes[r] for r in {e.radical for e in chosen}}
    payload = {
        "chosen": [list(vars(e).values()) for e in chosen],
        "heldout": [list(vars(e).values()) for e in held],
        "strokes": {r: list(v) for r, v in strokes.items()},
    }
    write_atomic(file, json.dumps(payload).encode())
    return chosen, held, strokes


def _radical_order(radical: str) -> tuple[int, str]:
    return int(radical.rstrip("'")), radical


def glyph_hierarchy(
    entries: Sequence[HanEntry],
    train_fonts: Sequence[str],
    strokes: dict[str, tuple[str, int]],
) -> Hierarchy:
    """The manual hierarchy: radical stroke band -> radical -> radical+residual band -> character -> glyph.

    `strokes`: radical id -> (its character, its own stroke count).
    """
    radicals = sorted({e.radical for e in entries}, key=_radical_order)
    rad_index = {r: i for i, r in enumerate(radicals)}
    residual_keys = sorted(
        {(rad_index[e.radical], _band(e.residual, RESIDUAL_BANDS)) for e in entries}
    )
    residual_index = {k: i for i, k in enumerate(residual_keys)}
    bands_present = sorted({_band(strokes[r][1], STROKE_BANDS) for r in radicals})
    band_index = {b: i for i, b in enumerate(bands_present)}

    per_char = []  # node ids of each character at the four levels above the glyph
    for c, e in enumerate(entries):
        r = rad_index[e.radical]
        per_char.append(
            (
                band_index[_band(strokes[e.radical][1], STROKE_BANDS)],
                r,
                residual_index[(r, _band(e.residual, RESIDUAL_BANDS))],
                c,
            )
        )
    n_fonts = len(train_fonts)
    # Leaves are glyphs, character-major: leaf = character * n_fonts + font.
    levels = [np.repeat(np.asarray([p[k] for p in per_char]), n_fonts) for k in range(4)]
    levels.append(np.arange(len(entries) * n_fonts))
    leaf_names = [f"{chr(e.codepoint)}@{f}" for e in entries for f in train_fonts]
    node_names = [
        [f"{STROKE_BANDS[b][2]} strokes" for b in bands_present],
        [f"{r} {strokes[r][0]}" for r in radicals],
        [
            f"{radicals[r]} {strokes[radicals[r]][0]} +{RESIDUAL_BANDS[b][2]} strokes"
            for r, b in residual_keys
        ],
        [chr(e.codepoint) for e in entries],
        leaf_names,
    ]
    return Hierarchy(
        leaf_names=leaf_names,
        level_names=list(LEVEL_NAMES),
        levels=levels,
        node_names=node_names,
        meta={"dataset": "glyphs", "train_fonts": list(train_fonts)},
    )


# ---- rendering --------------------------------------------------------------------------
def render_glyphs(
    codepoints: Sequence[int],
    font: str,
    *,
    image_size: int,
    renders: int,
    jitter: float,
    seed: int,
) -> np.ndarray:
    """uint8 [len(codepoints) * renders, image_size, image_size]: white ink on black.

    Render r of a glyph is the glyph scaled by a seeded factor in [1 - jitter, 1]
    of 85% of the image and shifted by up to `jitter` of the image; render 0 is
    centred at full size. Raises ValueError naming a glyph that draws no ink.
    """
    from PIL import Image, ImageDraw, ImageFont

    source = FONTS[font]
    path = str(font_path(font))
    out = np.zeros((len(codepoints) * renders, image_size, image_size), dtype=np.uint8)
    scale_rng = np.random.default_rng([seed, sum(map(ord, font))])
    faces: dict[int, ImageFont.FreeTypeFont] = {}
    for c, cp in enumerate(codepoints):
        for r in range(renders):
            scale = 1.0 if r == 0 else 1.0 - jitter * scale_rng.random()
            shift = (0.0, 0.0) if r == 0 else tuple(jitter * (2 * scale_rng.random(2) - 1))
            size = max(4, int(round(0.85 * image_size * scale)))
            face = faces.get(size)
            if face is None:
                face = faces[size] = ImageFont.truetype(path, size, index=source.index)
            canvas = Image.new("L", (image_size, image_size), 0)
            draw = ImageDraw.Draw(canvas)
            left, top, right, bottom = draw.textbbox((0, 0), chr(cp), font=face)
            x = (image_size - (right - left)) / 2 - left + shift[0] * image_size
            y = (image_size - (bottom - top)) / 2 - top + shift[1] * image_size
            draw.text((x, y), chr(cp), fill=255, font=face)
            pixels = np.asarray(canvas)
            if r == 0 and pixels.max() == 0:
                raise ValueError(f"font {font!r} draws no ink for U+{cp:04X} {chr(cp)}")
            out[c * renders + r] = pixels
    return out


def cached_renders(
    codepoints: Sequence[int],
    fonts: Sequence[str],
    *,
    image_size: int,
    renders: int,
    jitter: float,
    seed: int,
    cache_dir: Path,
) -> dict[str, np.ndarray]:
    """{font: renders} for every font, from the on-disk cache or rendered and cached.

    One file per font, keyed by the glyph list, the font file (path, size,
    mtime) and the render settings, so a changed font or setting renders anew.
    """
    out = {}
    for font in fonts:
        key = cache_key(
            list(codepoints),
            *_file_stamp(font_path(font)),
            FONTS[font].index,
            image_size,
            renders,
            jitter,
            seed,
        )
        out[font] = cached_array(
            cache_dir / f"{font}-{image_size}px-{key}.npy",
            lambda font=font: render_glyphs(
                codepoints, font, image_size=image_size, renders=renders, jitter=jitter, seed=seed
            ),
        )
    return out


def _glyph_batch_transform(batch: torch.Tensor, train: bool) -> torch.Tensor:
    # Ink in [0, 1], centred: the glyphs are ~15% ink, so 0.5 is no worse a
    # centre than the data mean and keeps the transform independent of the split.
    return batch.float().div_(127.5).sub_(1.0)


# ---- the dataset --------------------------------------------------------------------------
@register_dataset
def glyphs(
    *,
    radicals: int = 40,
    chars_per_radical: int = 8,
    max_frequency: int = 5,
    fonts: Sequence[str] = DEFAULT_TRAIN_FONTS,
    test_fonts: Sequence[str] = DEFAULT_TEST_FONTS,
    image_size: int = 32,
    renders_per_font: int = 2,
    test_renders_per_font: int = 1,
    jitter: float = 0.08,
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
        image_size: pixels per side; renders_per_font: seeded renders of each
            training glyph (render 0 centred, the others shifted and scaled by
            up to `jitter`); test_renders_per_font likewise for test glyphs.
        embedding: the per-leaf embedding behind cluster hierarchies (both see
            no label of the sweep; trainables/glyph_embeddings.py): "heldout",
            features of a small CNN trained to tell apart `heldout_chars`
            characters under radicals the sweep does not use; "pixels", PCA of
            each leaf's mean render.
        cache_dir: where renders are cached (default ~/.cache/granularity/glyphs).
    """
    fonts, test_fonts = list(fonts), list(test_fonts)
    overlap = sorted(set(fonts) & set(test_fonts))
    if overlap:
        raise ValueError(f"fonts and test_fonts overlap in {overlap}: test fonts must be unseen")
    if not fonts or not test_fonts:
        raise ValueError("glyphs needs at least one training font and one test font")
    for name in fonts + test_fonts:
        font_path(name)  # unknown name / missing package, before any work
    if embedding not in GLYPH_EMBEDDINGS:
        raise ValueError(
            f"unknown glyph embedding {embedding!r}; known: {', '.join(GLYPH_EMBEDDINGS)}"
        )
    settings = [
        radicals,
        chars_per_radical,
        max_frequency,
        fonts,
        test_fonts,
        image_size,
        renders_per_font,
        jitter,
        render_seed,
        heldout_chars,
        HELDOUT_SETTINGS,
    ]
    settings_key = cache_key(settings)
    if not 0 <= jitter < 0.5:
        raise ValueError(f"jitter={jitter} must be in [0, 0.5)")
    for name, value in (
        ("renders_per_font", renders_per_font),
        ("test_renders_per_font", test_renders_per_font),
        ("image_size", image_size),
    ):
        if int(value) < 1:
            raise ValueError(f"{name}={value} must be >= 1")
    cache = Path(cache_dir) if cache_dir else cache_root() / "glyphs"
    entries, heldout, strokes = cached_selection(
        fonts=fonts + test_fonts,
        radicals=int(radicals),
        chars_per_radical=int(chars_per_radical),
        max_frequency=int(max_frequency),
        heldout=int(heldout_chars) if embedding == "heldout" else 0,
        cache_dir=cache,
    )
    codepoints = [e.codepoint for e in entries]
    hierarchy = glyph_hierarchy(entries, fonts, strokes)
    common = dict(image_size=int(image_size), jitter=float(jitter), cache_dir=cache)

    def renders(chars: Sequence[int], which: Sequence[str], per_font: int, seed: int) -> np.ndarray:
        images = cached_renders(chars, which, renders=per_font, seed=seed, **common)
        return np.concatenate([images[f] for f in which])[:, None]

    train_x = torch.from_numpy(renders(codepoints, fonts, int(renders_per_font), int(render_seed)))
    test_x = torch.from_numpy(
        renders(codepoints, test_fonts, int(test_renders_per_font), int(render_seed) + 1)
    )
    n_chars, n_fonts = len(entries), len(fonts)
    train_leaf = np.concatenate(
        [np.repeat(np.arange(n_chars) * n_fonts + f, int(renders_per_font)) for f in range(n_fonts)]
    )
    test_leaf = np.tile(
        np.repeat(np.arange(n_chars) * n_fonts, int(test_renders_per_font)), len(test_fonts)
    )
    train = Split(leaf=train_leaf, inputs=train_x)
    test = Split(leaf=test_leaf, inputs=test_x)
    size = int(image_size)
    return Dataset(
        name="glyphs",
        hierarchy=hierarchy,
        default_target="radical",
        train=train,
        test=test,
        input_shape=(1, size, size),
        # twolayer's tile: the largest divisor of the side up to an eighth of it.
        patch_size=max(d for d in range(1, max(1, size // 8) + 1) if size % d == 0),
        batch_transform=_glyph_batch_transform,
        embed=lambda: glyph_embeddings(
            embedding,
            train=train,
            num_leaves=hierarchy.num_leaves,
            heldout=lambda: (
                renders(
                    [e.codepoint for e in heldout], fonts, int(renders_per_font), int(render_seed)
                ),
                np.tile(np.repeat(np.arange(len(heldout)), int(renders_per_font)), len(fonts)),
            ),
            cache_file=cache / f"embedding-{embedding}-{settings_key}.npy",
            transform=_glyph_batch_transform,
        ),
        meta={
            "characters": "".join(chr(cp) for cp in codepoints),
            "fonts": fonts,
            "test_fonts": test_fonts,
            "embedding": embedding,
        },
    )
