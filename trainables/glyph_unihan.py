"""The Unicode Han database behind the glyph dataset: each character's radical, residual strokes
and frequency, and each radical's own stroke count.

Read from Debian's `unicode-data` (`/usr/share/unicode`, or `$GRANULARITY_UNICODE_DIR`):
`kRSUnicode` (radical + residual strokes), `kFrequency` (the ~5,000 common
characters) and `CJKRadicals.txt` (the radicals). Nothing downloads: a missing
file names the package to install.
"""

from __future__ import annotations

import bz2
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

UNICODE_DIR = Path(os.environ.get("GRANULARITY_UNICODE_DIR", "/usr/share/unicode"))
UNICODE_PACKAGE = "unicode-data"
APT_HINT = "apt-get install"


def missing_package_error(what: str, path: Path, package: str) -> FileNotFoundError:
    """The error for a data file that is not installed: it names the Debian package."""
    return FileNotFoundError(
        f"{what} {str(path)!r} does not exist: install the Debian package with "
        f"`{APT_HINT} {package}` (the glyph dataset never downloads)"
    )


@dataclass(frozen=True)
class HanEntry:
    codepoint: int
    radical: str  # "85", or "149'" for a simplified radical form
    residual: int  # strokes beyond the radical
    frequency: int  # kFrequency: 1 (most common) .. 5


def _unihan_lines(name: str) -> Iterator[tuple[int, str, str]]:
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
