"""Who is signed in, what they may open, and the CSRF check on every form.

The browser holds Starlette's signed cookie (review.app): the editor's name, a random session
token, a stamp derived from their password hash (a password reset ends their other sessions) and
the CSRF token. The token names a row of desk_sessions (storage.desk_sessions), which sign-out
ends: a signed cookie stays valid until it expires, so without the row a copy of it would outlive
the sign-out. The row and the editor are read from the database on every request (one lookup), so
signing out, deactivating an editor or changing their role takes effect at the next click.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request

from storage import desk_sessions
from storage.db import Database
from storage.models import Editor

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_NEXT = 2000  # characters of a "go back to" path: a longer one is not a desk page, go home instead


@dataclass(frozen=True)
class Account:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class SignInRequired(Exception):
    """No valid session: the handler redirects to the sign-in page."""

    def __init__(self, next_path: str | None) -> None:
        self.next_path = next_path


class Forbidden(Exception):
    """Signed in, but not allowed (an editor opening an admin page)."""


class CsrfRefused(Exception):
    """A form or request without the session's CSRF token."""


def database(request: Request) -> Database:
    return request.app.state.db


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (anonymous sessions get one for the sign-in form)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def new_csrf_token(request: Request) -> str:
    request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


async def csrf_guard(request: Request) -> None:
    """App-wide dependency: every state-changing request carries the token, as a form field or header."""
    if request.method not in _UNSAFE_METHODS:
        return
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()  # Starlette caches the parsed form: the route reads it again for free
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfRefused()


def session_stamp(secret: str, name: str, password_hash: str) -> str:
    """Ties a session to the password it was opened with, without putting the hash in the cookie."""
    return hmac.new(secret.encode(), f"{name}\0{password_hash}".encode(), hashlib.sha256).hexdigest()[:32]


def client_address(request: Request) -> str | None:
    """The client's address (uvicorn's proxy_headers puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else None


def open_session(request: Request, db: Database, editor: Editor) -> None:
    """Sign `editor` in: a fresh cookie session (nothing of the anonymous one carries over) and its row."""
    close_session(request, db)
    token = desk_sessions.start(db, editor.name, client_address(request))
    request.session.update(
        editor=editor.name, sid=token, stamp=session_stamp(request.app.state.secret, editor.name, editor.password_hash)
    )
    new_csrf_token(request)


def close_session(request: Request, db: Database) -> None:
    """Sign out: the row is ended, so a copy of the cookie is refused too; the cookie is emptied."""
    token = request.session.get("sid")
    desk_sessions.end(db, token if isinstance(token, str) else None)
    request.session.clear()


def current_account(request: Request, db: Database) -> Account | None:
    """The signed-in editor, or None; a stale session (signed out elsewhere, deactivated, password
    changed, idle too long) is forgotten."""
    name = request.session.get("editor")
    if not name:
        return None
    token = request.session.get("sid")
    live = desk_sessions.lookup(db, token if isinstance(token, str) else None)
    stamp = str(request.session.get("stamp", ""))
    if (
        live is None
        or live.editor.name != name
        or not live.editor.active
        or not hmac.compare_digest(
            stamp.encode(), session_stamp(request.app.state.secret, name, live.editor.password_hash).encode()
        )
    ):
        if live is not None:  # deactivated or password changed: a copy of this cookie must not revive with the account
            desk_sessions.end(db, token if isinstance(token, str) else None)
        for key in ("editor", "sid", "stamp"):
            request.session.pop(key, None)
        return None
    return Account(name=live.editor.name, role=live.editor.role)


def signed_in(request: Request, db: Annotated[Database, Depends(database)]) -> Account:
    account = current_account(request, db)
    if account is None:
        raise SignInRequired(current_path(request) if request.method == "GET" else None)
    request.state.account = account
    return account


def admin_only(account: Annotated[Account, Depends(signed_in)]) -> Account:
    if not account.is_admin:
        raise Forbidden()
    return account


# For route signatures: `account: SignedIn`, `admin: AdminOnly`, `db: Db`.
SignedIn = Annotated[Account, Depends(signed_in)]
AdminOnly = Annotated[Account, Depends(admin_only)]
Db = Annotated[Database, Depends(database)]


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path on this site (no open redirect to another host)."""
    if not target or len(target) > MAX_NEXT or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return "/"
    return target


def cross_site(request: Request) -> bool:
    """A navigation from another site: the browser left the SameSite=strict session cookie out."""
    return request.headers.get("sec-fetch-site") == "cross-site"


def current_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def login_url(next_path: str | None) -> str:
    if not next_path or safe_next(next_path) == "/":
        return "/login"
    return "/login?next=" + quote(next_path, safe="")
