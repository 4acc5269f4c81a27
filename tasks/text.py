"""Small text helpers shared by the corpus stages."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WS = re.compile(r"\s+")


def normalize_for_hash(text: str) -> str:
    """The dedup key's view of a text: NFC, whitespace collapsed, case folded."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip().casefold()


def doc_id_for(text: str) -> str:
    """Stable document id: a hash of the normalized text, so identical texts share an id."""
    return hashlib.sha256(normalize_for_hash(text).encode("utf-8")).hexdigest()[:32]
