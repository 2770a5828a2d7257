"""Rendering glyphs to images, with seeded nested jitter and stroke-width variation, cached on disk.

Render r of a glyph is a pure function of (seed, font, codepoint, r), so the
first r renders of 16 are exactly the 4-render set: data sizes built from
`renders_per_font` are nested. Render 0 of a stream is the plain glyph
(centred, 85% of the image, the font's own stroke width) unless the stream
starts later (`first`, the validation renders).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.data import cached_array
from trainables.glyph_fonts import FONTS, font_path

RENDER_VERSION = 2  # bump when the renderer changes what it draws
MAX_RENDERS = 16  # renders of one glyph per font and stream
SUPERSAMPLE = 8  # stroke changes are made on a render this many times larger (sub-pixel steps)
GLYPH_BOX = 0.85  # the plain glyph's box, as a fraction of the image
ERODE_KEEP = 0.6  # an eroded render keeps at least this fraction of its ink


@dataclass(frozen=True)
class RenderParams:
    """How render r of a glyph differs from the plain one."""

    scale: float  # of the glyph box, in [1 - jitter, 1]
    shift: tuple[float, float]  # (x, y) as fractions of the image, in [-jitter, jitter]
    stroke: float  # per-side stroke change in output pixels (> 0 thicker, < 0 thinner)


def render_params(
    font: str, codepoint: int, index: int, *, jitter: float, stroke: float, seed: int
) -> RenderParams:
    """The seeded parameters of render `index` of a glyph: index 0 is the plain glyph.

    Each render draws from its own generator keyed by (seed, font, codepoint,
    index), which is what makes render sets nested.
    """
    if index == 0:
        return RenderParams(1.0, (0.0, 0.0), 0.0)
    rng = np.random.default_rng([seed, zlib.crc32(font.encode()), codepoint, index])
    u = rng.random(4)
    return RenderParams(
        scale=1.0 - jitter * u[0],
        shift=(jitter * (2 * u[1] - 1), jitter * (2 * u[2] - 1)),
        stroke=stroke * (2 * u[3] - 1),
    )


def render_glyphs(
    codepoints: Sequence[int],
    font: str,
    *,
    image_size: int,
    renders: int,
    jitter: float,
    seed: int,
    stroke: float = 0.0,
    first: int = 0,
) -> np.ndarray:
    """uint8 [len(codepoints) * renders, image_size, image_size]: white ink on black.

    Row c * renders + r is render `first + r` of codepoint c (`render_params`).
    With `stroke` > 0 every render is drawn `SUPERSAMPLE` times larger, its
    strokes dilated (thicker) or eroded (thinner) there by its seeded change,
    and box-filtered down, so changes of a fraction of a pixel are possible
    (erosion stops before a stroke vanishes: `_change_stroke`).
    Raises ValueError naming a glyph that draws no ink.
    """
    from PIL import Image, ImageDraw, ImageFont

    source = FONTS[font]
    path = str(font_path(font))
    factor = SUPERSAMPLE if stroke > 0 else 1
    side = image_size * factor
    out = np.zeros((len(codepoints) * renders, image_size, image_size), dtype=np.uint8)
    faces: dict[int, ImageFont.FreeTypeFont] = {}
    for c, cp in enumerate(codepoints):
        for r in range(renders):
            p = render_params(font, cp, first + r, jitter=jitter, stroke=stroke, seed=seed)
            size = max(4, int(round(GLYPH_BOX * image_size * p.scale))) * factor
            face = faces.get(size)
            if face is None:
                face = faces[size] = ImageFont.truetype(path, size, index=source.index)
            canvas = Image.new("L", (side, side), 0)
            draw = ImageDraw.Draw(canvas)
            left, top, right, bottom = draw.textbbox((0, 0), chr(cp), font=face)
            x = (side - (right - left)) / 2 - left + p.shift[0] * side
            y = (side - (bottom - top)) / 2 - top + p.shift[1] * side
            draw.text((x, y), chr(cp), fill=255, font=face)
            pixels = np.asarray(canvas)
            if factor > 1:
                pixels = _change_stroke(pixels, int(round(p.stroke * factor)))
                # Box filter down: the mean of each factor x factor block.
                blocks = pixels.reshape(image_size, factor, image_size, factor)
                pixels = blocks.mean(axis=(1, 3)).round().astype(np.uint8)
            if pixels.max() == 0:
                raise ValueError(
                    f"font {font!r} draws no ink for U+{cp:04X} {chr(cp)} (render {first + r})"
                )
            out[c * renders + r] = pixels
    return out


def _change_stroke(pixels: np.ndarray, steps: int) -> np.ndarray:
    """`pixels` dilated (steps > 0) or eroded (steps < 0) by |steps| pixels per side.

    Erosion keeps at least `ERODE_KEEP` of the ink: a thin-stroked face (a ming
    hairline is ~1 px at 32 px) would otherwise lose whole strokes, which is
    another character, not a lighter weight; fewer steps are used until it holds.
    """
    from scipy import ndimage  # separable rank filters: ~40x faster than PIL's at 8x

    if steps > 0:
        return ndimage.maximum_filter(pixels, size=2 * steps + 1)
    ink = pixels.sum(dtype=np.float64)
    for size in range(-steps, 0, -1):
        eroded = ndimage.minimum_filter(pixels, size=2 * size + 1)
        if eroded.sum(dtype=np.float64) >= ERODE_KEEP * ink:
            return eroded
    return pixels


def cache_key(*parts: object) -> str:
    """Hash of the render version and `parts` (JSON): the name of a cached file."""
    payload = json.dumps([RENDER_VERSION, *parts], default=list).encode()
    return hashlib.sha256(payload).hexdigest()[:24]


def file_stamp(path: Path) -> list:
    """(path, size, mtime): a changed file gets a new cache key."""
    stat = path.stat()
    return [str(path), stat.st_size, int(stat.st_mtime)]


def cached_renders(
    codepoints: Sequence[int],
    fonts: Sequence[str],
    *,
    image_size: int,
    renders: int,
    jitter: float,
    seed: int,
    cache_dir: Path,
    stroke: float = 0.0,
    first: int = 0,
) -> dict[str, np.ndarray]:
    """{font: renders} for every font, from the on-disk cache or rendered and cached.

    One file per font, keyed by the glyph list, the font file (path, size,
    mtime, face) and every render setting, so a changed font or setting renders anew.
    """
    out = {}
    for font in fonts:
        key = cache_key(
            list(codepoints),
            *file_stamp(font_path(font)),
            FONTS[font].index,
            [image_size, renders, jitter, seed, stroke, first],
        )
        out[font] = cached_array(
            cache_dir / f"{font}-{image_size}px-{key}.npy",
            lambda font=font: render_glyphs(
                codepoints,
                font,
                image_size=image_size,
                renders=renders,
                jitter=jitter,
                seed=seed,
                stroke=stroke,
                first=first,
            ),
        )
    return out
