"""Editors' decisions back into training: approved drafts become a corpus source of their own.

Each nightly run writes every approved draft (its final, edited text) to
`$DRAFTFLOW_HOME/feedback/editor-approved/approved.parquet` and ingests that folder as the source
`editor-approved`. The file is replaced only when its content changes (the export runs every
night and every 30 minutes), so an unchanged export keeps its bytes and its mtime, and the night's
ingest stays cached. Ingest is incremental, so an unchanged file costs nothing; a changed one is
re-read. The drafts go through cleaning like any document (dedup included: a draft that copies the
corpus is dropped as a duplicate, not trained on twice).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from storage.db import open_database
from storage.settings import Settings
from tasks.review.export import export_drafts

log = logging.getLogger("draftflow.feedback")
SOURCE = "editor-approved"


def approved_file(settings: Settings) -> Path:
    """The Parquet file of every approved draft, as the last export wrote it."""
    return settings.home / "feedback" / SOURCE / "approved.parquet"


def write_editor_source(settings: Settings) -> str | None:
    """The `NAME=PATH` source spec of the approved drafts, or None while there are none."""
    target = approved_file(settings)
    folder = target.parent
    fresh = folder / ".approved.parquet.next"  # hidden: ingest never reads it
    db = open_database(settings.database_url)
    rows = export_drafts(db, fresh, fmt="parquet", kind="drafts")
    changed = replace_if_changed(fresh, target)
    log.info("editor feedback: %d approved drafts in %s (%s)", rows, folder, "updated" if changed else "unchanged")
    return f"{SOURCE}={folder}" if rows else None


def replace_if_changed(fresh: Path, target: Path) -> bool:
    """Move `fresh` over `target` unless both hold the same bytes (then `fresh` is removed)."""
    if target.is_file() and _sha256(target) == _sha256(fresh):
        fresh.unlink()
        return False
    fresh.replace(target)
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
