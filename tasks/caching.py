"""Prefect cache keys for the corpus stages, built from fingerprints.

A night whose inputs did not change skips ingest, clean and tokenize: each task's key is the
fingerprint of what decides its output, and Prefect returns the stored reference instead of
running the task.
- ingest: the sources, the ingest options and every file's (path, size, mtime). A stat per file,
  no reading: the stage itself hashes content when it does run.
- clean: the raw dataset's fingerprint, the cleaning parameters, the code version.
- tokenize: the clean dataset's fingerprint, the base model, the parameters, the code version.
Every key includes the data home and the corpus and tokens URLs, so two homes (or locations)
never share a cached reference. A cached reference
is used only while its dataset is still on disk with that fingerprint (`still_on_disk`); otherwise
the flow runs the task again with `refresh_cache=True`.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from storage.fingerprint import code_version, fingerprint
from storage.parquet_store import read_manifest
from storage.refs import DatasetRef, TokensRef

CODE_VERSION = code_version()
CACHE_FOR = timedelta(days=30)


def ingest_key(_context: Any, parameters: dict[str, Any]) -> str:
    from tasks.sources import SourceSpec, iter_units

    options, settings = parameters["options"], parameters["settings"]
    listing = []
    for source in parameters["sources"]:
        spec = SourceSpec.parse(source)
        if spec.path is None:  # the embedded corpus: it changes with the Python installation
            listing.append((source, sys.version, str(Path(sys.prefix))))
            continue
        for unit in iter_units(spec, options):
            stat = unit.path.stat()
            listing.append((unit.file, stat.st_size, stat.st_mtime_ns))
    return "ingest-" + fingerprint(_where(settings), sorted(parameters["sources"]), options.model_dump(),
                                   listing, CODE_VERSION)


def clean_key(_context: Any, parameters: dict[str, Any]) -> str:
    raw, settings, params = parameters["raw"], parameters["settings"], parameters["params"]
    return "clean-" + fingerprint(_where(settings), raw.fingerprint, params.model_dump(), CODE_VERSION)


def tokenize_key(_context: Any, parameters: dict[str, Any]) -> str:
    clean, base, settings, params = (parameters[k] for k in ("clean", "base", "settings", "params"))
    return "tokenize-" + fingerprint(_where(settings), clean.fingerprint, base.model_dump(), params.model_dump(),
                                     CODE_VERSION)


def _where(settings: Any) -> list[str | None]:
    """Where the outputs live: moving the corpus or the tokens to another URL is a new key."""
    return [str(settings.home), settings.corpus_url, settings.tokens_url]


def still_on_disk(ref: DatasetRef | TokensRef) -> bool:
    """Whether the dataset a (possibly cached) reference names is there, with that fingerprint."""
    folder = Path(ref.path) / "train" if isinstance(ref, TokensRef) else Path(ref.path)
    manifest = read_manifest(folder)
    return manifest is not None and manifest.get("fingerprint") == ref.fingerprint
