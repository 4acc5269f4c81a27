"""Editors, rejection reasons and desk-wide settings: the desk's configuration in the database.

Passwords are hashed with argon2id (argon2-cffi); only the hash is stored.
"""

from __future__ import annotations

import re
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import Field, ValidationError
from sqlalchemy import select

from storage.db import Database
from storage.errors import DraftflowError, NotFoundError
from storage.models import DeskSetting, Editor, RejectionReason
from storage.params import Params, first_problem

ROLES = ("editor", "admin")
MIN_PASSWORD = 8
_hasher = PasswordHasher()
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


class DeskSettings(Params):
    """Desk-wide settings an admin changes; the CLI (`review config`) and the web form validate with these bounds."""

    required_reviews: int = Field(
        1, ge=1, le=10, description="Approvals by different editors a draft needs before it is approved."
    )
    lease_minutes: int = Field(
        15, ge=1, le=24 * 60, description="How long a claimed draft stays with its editor without a heartbeat."
    )
    undo_minutes: int = Field(
        10, ge=0, le=24 * 60, description="How long an editor can undo their own decision (after: an admin reopens)."
    )


DESK_DEFAULTS: dict[str, Any] = DeskSettings().model_dump()


def create_editor(db: Database, name: str, password: str, role: str = "editor") -> Editor:
    if not _NAME.match(name or ""):
        raise DraftflowError(f"bad editor name {name!r}: use letters, digits and _ . @ - (at most 100)")
    if role not in ROLES:
        raise DraftflowError(f"unknown role {role!r} (one of: {', '.join(ROLES)})")
    _check_password(password)
    with db.transaction() as session:
        if session.scalar(select(Editor).where(Editor.name == name)) is not None:
            raise DraftflowError(f"editor {name!r} exists already")
        editor = Editor(name=name, password_hash=_hasher.hash(password), role=role, active=True)
        session.add(editor)
        session.flush()
        return editor


def set_password(db: Database, name: str, password: str) -> None:
    _check_password(password)
    with db.transaction() as session:
        _get(session, name).password_hash = _hasher.hash(password)


def set_editor(db: Database, name: str, *, role: str | None = None, active: bool | None = None) -> Editor:
    if role is not None and role not in ROLES:
        raise DraftflowError(f"unknown role {role!r} (one of: {', '.join(ROLES)})")
    with db.transaction() as session:
        editor = _get(session, name)
        if role is not None:
            editor.role = role
        if active is not None:
            editor.active = active
        return editor


def authenticate(db: Database, name: str, password: str) -> Editor | None:
    """The active editor with this name and password, or None (same answer for every failure)."""
    with db.session() as session:
        editor = session.scalar(select(Editor).where(Editor.name == name))
        if editor is None or not editor.active:
            _hasher.hash(password or "x")  # same cost either way: no user enumeration by timing
            return None
        try:
            _hasher.verify(editor.password_hash, password or "")
        except (VerificationError, InvalidHashError):
            return None
        return editor


def get_editor(db: Database, name: str) -> Editor | None:
    with db.session() as session:
        return session.scalar(select(Editor).where(Editor.name == name))


def list_editors(db: Database) -> list[Editor]:
    with db.session() as session:
        return list(session.scalars(select(Editor).order_by(Editor.name)))


def rejection_reasons(db: Database, include_inactive: bool = False) -> list[RejectionReason]:
    with db.session() as session:
        query = select(RejectionReason).order_by(RejectionReason.code)
        if not include_inactive:
            query = query.where(RejectionReason.active.is_(True))
        return list(session.scalars(query))


def set_rejection_reason(db: Database, code: str, label: str | None = None, active: bool = True) -> RejectionReason:
    if not re.match(r"^[a-z0-9_]{1,40}$", code or ""):
        raise DraftflowError(f"bad reason code {code!r}: use a-z, 0-9 and _ (at most 40)")
    with db.transaction() as session:
        reason = session.get(RejectionReason, code)
        if reason is None:
            if not label:
                raise DraftflowError(f"a new reason {code!r} needs a label")
            reason = RejectionReason(code=code, label=label, active=active)
            session.add(reason)
        else:
            reason.label, reason.active = label or reason.label, active
        return reason


def check_rejection_reason(db: Database, code: str) -> str:
    codes = [r.code for r in rejection_reasons(db)]
    if code not in codes:
        raise DraftflowError(f"unknown rejection reason {code!r} (one of: {', '.join(codes)})")
    return code


def desk_setting(db: Database, key: str) -> Any:
    with db.session() as session:
        row = session.get(DeskSetting, key)
        return DESK_DEFAULTS[key] if row is None else row.value


def set_desk_settings(db: Database, values: dict[str, Any]) -> None:
    """Change desk settings, all or none, checked against `DeskSettings` (its bounds are the only ones)."""
    try:
        DeskSettings.model_validate(values, strict=True)
    except ValidationError as exc:
        raise DraftflowError(f"desk setting {first_problem(exc, DeskSettings)}") from None
    with db.transaction() as session:
        for key, value in values.items():
            session.merge(DeskSetting(key=key, value=value))


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise DraftflowError(f"a password needs at least {MIN_PASSWORD} characters")


def _get(session: Any, name: str) -> Editor:
    editor = session.scalar(select(Editor).where(Editor.name == name))
    if editor is None:
        raise NotFoundError(f"no editor named {name!r}")
    return editor
