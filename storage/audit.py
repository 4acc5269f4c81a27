"""The desk's audit log (desk_audit): who did which sensitive thing (an export), with what, and when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storage.db import Database
from storage.models import DeskAudit, utcnow

ACTOR_CHARS = 100  # the columns' widths
ACTION_CHARS = 32


def record(db: Database, actor: str, action: str, detail: dict[str, Any] | None = None) -> DeskAudit:
    """Write one audit row now; `detail` must be JSON (what was done, e.g. an export's kind and rows)."""
    with db.transaction() as session:
        row = DeskAudit(actor=actor[:ACTOR_CHARS], action=action[:ACTION_CHARS], detail=dict(detail or {}), at=utcnow())
        session.add(row)
        session.flush()
        return row


def recent(db: Database, action: str | None = None, limit: int = 50) -> list[DeskAudit]:
    """The latest audit rows, newest first, optionally of one action."""
    query = select(DeskAudit).order_by(DeskAudit.at.desc(), DeskAudit.id.desc()).limit(max(1, limit))
    if action is not None:
        query = query.where(DeskAudit.action == action)
    with db.session() as session:
        return list(session.scalars(query))
