"""Server-side desk sessions: a signed cookie alone cannot be revoked, a row in desk_sessions can.

The browser's (signed) session cookie carries a random token; the table keeps only its sha256, so
a copy of the table does not let anyone sign in. Signing out sets `ended_at`: a copy of the cookie
taken before is refused from then on. Checking a session is one primary-key lookup joined to its
editor; `seen_at` is written at most once every SEEN_EVERY, so browsing does not turn every page
view into a write.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from storage.db import Database
from storage.models import DeskSession, Editor, utcnow

TOKEN_BYTES = 32
IDLE_LIMIT = timedelta(hours=12)  # one working day without a click ends a session (as the cookie's max-age)
SEEN_EVERY = timedelta(minutes=1)
ADDRESS_CHARS = 64  # the column's width


@dataclass(frozen=True)
class LiveSession:
    """A session that is still open, and its editor as the database has them now."""

    editor: Editor
    seen_at: datetime


def start(db: Database, editor: str, address: str | None) -> str:
    """Open a session for `editor`; returns the token for the cookie (only its hash is stored)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    with db.transaction() as session:
        session.add(
            DeskSession(
                id=_digest(token),
                editor=editor,
                address=(address or "")[:ADDRESS_CHARS] or None,
                created_at=now,
                seen_at=now,
            )
        )
    return token


def lookup(db: Database, token: str | None) -> LiveSession | None:
    """The open session of this token with its editor, or None (unknown, ended, idle too long, editor gone)."""
    if not token or len(token) > 2 * TOKEN_BYTES:
        return None
    digest = _digest(token)
    now = utcnow()
    with db.session() as session:
        row = session.execute(
            select(DeskSession.seen_at, Editor)
            .join(Editor, Editor.name == DeskSession.editor)
            .where(DeskSession.id == digest, DeskSession.ended_at.is_(None))
        ).first()
    if row is None:
        return None
    seen_at, editor = _utc(row[0]), row[1]
    if now - seen_at > IDLE_LIMIT:
        return None
    if now - seen_at > SEEN_EVERY:
        with db.transaction() as session:
            session.execute(update(DeskSession).where(DeskSession.id == digest).values(seen_at=now))
    return LiveSession(editor=editor, seen_at=seen_at)


def end(db: Database, token: str | None) -> None:
    """Sign-out: this session's cookie, and every copy of it, is refused from now on."""
    if not token:
        return
    with db.transaction() as session:
        session.execute(
            update(DeskSession)
            .where(DeskSession.id == _digest(token), DeskSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )


def end_all(db: Database, editor: str) -> int:
    """End every open session of `editor` (deactivated, password reset); returns how many were open."""
    with db.transaction() as session:
        result = session.execute(
            update(DeskSession)
            .where(DeskSession.editor == editor, DeskSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
