"""Language identification with py3langid, whose model ships inside its PyPI package (no download)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_MAX_CHARS = 10_000  # the first 10k characters decide; longer texts only cost time


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of the most likely language."""
    language, probability = _identifier().classify(text[:_MAX_CHARS])
    return str(language), float(probability)
