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


def code_version(*module_files: str | Path) -> str:
    """Hash of the source files that implement a stage: editing the code changes the key."""
    digest = hashlib.sha256()
    for path in module_files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
