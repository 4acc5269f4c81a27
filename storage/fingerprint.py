"""Stable fingerprints: hash of inputs + parameters + code version (the future cache key)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def fingerprint(*parts: Any) -> str:
    """A short sha256 over JSON-serialisable parts (order matters)."""
    payload = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def code_version(*sources: str | Path) -> str:
    """Hash of the source files that implement a stage (a folder: every `.py` in it, recursively):
    editing the code changes the key."""
    digest = hashlib.sha256()
    for source in map(Path, sources):
        for path in sorted(source.rglob("*.py")) if source.is_dir() else [source]:
            digest.update(path.relative_to(source.parent).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
