"""Canonical JSON and its hash: equal content, equal text (trial keys, spec hashes)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(payload: Any) -> str:
    """JSON with sorted keys and no whitespace: equal content, equal text."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_hash(payload: Any, length: int = 16) -> str:
    """sha256 (hex, first `length` characters) of `canonical_json(payload)`."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:length]
