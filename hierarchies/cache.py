"""A disk cache of derived hierarchies, keyed by everything that determines them.

Building a sweep's cluster hierarchies runs kMeans per arm, level and seed
(seconds for the quickstart, more for real data), and every `granularity run`,
`validate` and `status` builds the plan again. The result is a pure function of
the builder, its arguments (the reference hierarchy by content hash, embeddings
by their bytes, seeds, p, target level), the hierarchies package's own code and
scikit-learn's version, so it is stored under `<cache_root>/hierarchies/<key>.json`
and read back instead. Delete the folder to rebuild everything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from contracts import cache_root
from hierarchies.core import Hierarchy, HierarchyError


@cache
def _code_version() -> str:
    """This package's source and scikit-learn's version: a change to either rebuilds."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    try:
        digest.update(metadata.version("scikit-learn").encode())
    except metadata.PackageNotFoundError:
        pass
    return digest.hexdigest()[:16]


def _identity(value: Any) -> Any:
    """A JSON-able stand-in that changes whenever `value` does."""
    if isinstance(value, Hierarchy):
        return {"hierarchy": value.content_hash()}
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        blob = hashlib.sha256(data.tobytes()).hexdigest()[:16]
        return {"array": blob, "dtype": str(data.dtype), "shape": list(data.shape)}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"cannot key a hierarchy cache on {type(value).__name__}")


def cache_key(builder: str, kwargs: Mapping[str, Any]) -> str:
    """The cache file name for `builder(**kwargs)`."""
    payload = {
        "builder": builder,
        "code": _code_version(),
        "kwargs": {name: _identity(v) for name, v in sorted(kwargs.items())},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def cached_build(
    builder: str, kwargs: Mapping[str, Any], build: Callable[[], Hierarchy]
) -> Hierarchy:
    """`build()`, or the hierarchy it made before for the same builder and arguments.

    A missing or unreadable cache file is rebuilt (and rewritten, atomically);
    a cache folder that cannot be written leaves the result uncached.
    """
    path = cache_root() / "hierarchies" / f"{cache_key(builder, kwargs)}.json"
    try:
        return Hierarchy.load(path)
    except (HierarchyError, OSError):
        pass
    hierarchy = build()
    try:
        hierarchy.save(path)
    except OSError:
        pass
    return hierarchy
