"""The glyph dataset's taxonomy: which characters it uses and the manual hierarchy over them.

Selection: the characters every chosen font really maps, under the radicals
richest in them (Unicode Han database, trainables/glyph_unihan.py). Levels,
coarsest first: radical stroke band -> radical -> radical + residual band ->
character -> glyph (character x training font).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fileio import write_atomic
from hierarchies import Hierarchy
from trainables import glyph_unihan
from trainables.glyph_fonts import FONTS, font_codepoints, font_path
from trainables.glyph_render import cache_key, file_stamp
from trainables.glyph_unihan import HanEntry, han_entries, radical_strokes

# Kangxi radical stroke-count bands (the radical index of a dictionary is in this order).
# (lowest, highest, name); a residual can be -1 (a character drawn with part of its radical).
STROKE_BANDS = ((0, 2, "1-2"), (3, 3, "3"), (4, 4, "4"), (5, 6, "5-6"), (7, 99, "7+"))
RESIDUAL_BANDS = ((-9, 4, "0-4"), (5, 7, "5-7"), (8, 99, "8+"))
LEVEL_NAMES = ["radical_strokes", "radical", "radical_residual", "character", "glyph"]


def _band(value: int, bands: Sequence[tuple[int, int, str]]) -> int:
    return next(i for i, (lo, hi, _) in enumerate(bands) if lo <= value <= hi)


def eligible_characters(*, fonts: Sequence[str], max_frequency: int) -> dict[str, list[HanEntry]]:
    """Radical -> its characters (most frequent first) that every font maps, kFrequency <= max."""
    covered: frozenset[int] | None = None
    for name in fonts:
        cps = font_codepoints(str(font_path(name)), FONTS[name].index)
        covered = cps if covered is None else covered & cps
    by_radical: dict[str, list[HanEntry]] = {}
    for entry in han_entries(str(glyph_unihan.UNICODE_DIR)):
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
        glyph_unihan.UNICODE_DIR / n
        for n in ("Unihan_IRGSources.txt.bz2", "Unihan_DictionaryLikeData.txt.bz2")
    ]
    stamps = [file_stamp(p) for p in sources if p.exists()] + [
        file_stamp(font_path(f)) for f in fonts
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
    all_strokes = radical_strokes(str(glyph_unihan.UNICODE_DIR))
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
