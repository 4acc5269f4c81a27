"""Prefect cache keys for the corpus stages: each key holds what the stage's output depends on, and nothing else.

A night whose inputs did not change skips ingest, clean and tokenize: Prefect returns the stored
reference instead of running the task.
- ingest: the sources, the ingest options, the ingest code, and every file's (path, size, mtime) —
  a stat per file, no reading — except files draftflow writes itself under the data home (the
  editor-approved export), which are keyed on their content: they are rewritten on a schedule.
- clean: the raw dataset's fingerprint, the cleaning parameters, the clean code.
- tokenize: the clean dataset's fingerprint, the tokenizer's id (not the base model's version,
  which changes every night while its tokenizer does not), the parameters, the tokenize code.
Every key includes the data home and the corpus and tokens URLs, so two homes (or locations) never
share a cached reference. A cached reference is used only while its dataset is still on disk with
that fingerprint (`still_on_disk`); otherwise the flow runs the task again with `refresh_cache=True`.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from storage.fingerprint import fingerprint
from storage.parquet_store import read_manifest
from storage.refs import BaseModelSpec, DatasetRef, TokensRef
from storage.settings import Settings

CACHE_FOR = timedelta(days=30)


def ingest_key(_context: Any, parameters: dict[str, Any]) -> str:
    from tasks.ingest.sources import SourceSpec, iter_units
    from tasks.ingest.stage import CODE_VERSION

    options, settings = parameters["options"], parameters["settings"]
    listing: list[tuple[Any, ...]] = []
    for source in parameters["sources"]:
        spec = SourceSpec.parse(source)
        if spec.path is None:  # the embedded corpus: it changes with the Python installation
            listing.append((source, sys.version, str(Path(sys.prefix))))
            continue
        ours = spec.path.is_relative_to(settings.home)
        for unit in iter_units(spec, options):
            if ours:
                listing.append((unit.file, unit.content_hash()))
            else:
                stat = unit.path.stat()
                listing.append((unit.file, stat.st_size, stat.st_mtime_ns))
    return "ingest-" + fingerprint(
        _where(settings), sorted(parameters["sources"]), options.model_dump(), listing, CODE_VERSION
    )


def clean_key(_context: Any, parameters: dict[str, Any]) -> str:
    from tasks.clean.stage import CODE_VERSION

    raw, settings, params = parameters["raw"], parameters["settings"], parameters["params"]
    return "clean-" + fingerprint(_where(settings), raw.fingerprint, params.model_dump(), CODE_VERSION)


def tokenize_key(_context: Any, parameters: dict[str, Any]) -> str:
    from tasks.tokenize.stage import CODE_VERSION

    clean, base, settings, params = (parameters[k] for k in ("clean", "base", "settings", "params"))
    return "tokenize-" + fingerprint(
        _where(settings), clean.fingerprint, tokenizer_identity(base), params.model_dump(), CODE_VERSION
    )


def tokenizer_identity(base: BaseModelSpec) -> str:
    """`scratch` (a BPE trained on the corpus: the clean fingerprint and parameters decide it), or the
    content id of the base model's tokenizer."""
    if base.kind == "scratch" or base.source is None:
        return "scratch"
    from tasks.models import load_tokenizer, tokenizer_id_of

    return tokenizer_id_of(load_tokenizer(base.source))


def _where(settings: Settings) -> list[str | None]:
    """Where the outputs live: moving the corpus or the tokens to another URL is a new key."""
    return [str(settings.home), settings.corpus_url, settings.tokens_url]


def still_on_disk(ref: DatasetRef | TokensRef) -> bool:
    """Whether the dataset a (possibly cached) reference names is there, with that fingerprint."""
    folder = Path(ref.path) / "train" if isinstance(ref, TokensRef) else Path(ref.path)
    manifest = read_manifest(folder)
    return manifest is not None and manifest.get("fingerprint") == ref.fingerprint
