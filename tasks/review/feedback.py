"""Editors' decisions back into training: approved drafts become a corpus source of their own.

Each nightly run writes every approved draft (its final, edited text) to
`$DRAFTFLOW_HOME/feedback/editor-approved/approved.parquet` and ingests that folder as the source
`editor-approved`. Ingest is incremental, so an unchanged file costs nothing; a changed one is
re-read. The drafts go through cleaning like any document (dedup included: a draft that copies the
corpus is dropped as a duplicate, not trained on twice).
"""

from __future__ import annotations

import logging

from storage.db import open_database
from storage.settings import Settings
from tasks.review.export import export_drafts

log = logging.getLogger("draftflow.feedback")
SOURCE = "editor-approved"


def write_editor_source(settings: Settings) -> str | None:
    """The `NAME=PATH` source spec of the approved drafts, or None while there are none."""
    folder = settings.home / "feedback" / SOURCE
    db = open_database(settings.database_url)
    rows = export_drafts(db, folder / "approved.parquet", fmt="parquet", kind="drafts")
    log.info("editor feedback: %d approved drafts in %s", rows, folder)
    return f"{SOURCE}={folder}" if rows else None
