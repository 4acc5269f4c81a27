"""Who is signed in, what they may open, and the CSRF check on every form.

Sessions are Starlette's signed cookie (review.app). It holds the editor's name, a stamp derived
from their password hash (a password reset ends their other sessions) and the CSRF token. The
editor is read from the database on every request, so deactivating an editor or changing their
role takes effect at their next click, not when their cookie expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request

from storage.accounts import get_editor
from storage.db import Database

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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


def signed_in(request: Request, db: Annotated[Database, Depends(database)]) -> Account:
    name = request.session.get("editor")
    editor = get_editor(db, name) if name else None
    stamp = request.session.get("stamp", "")
    if (
        editor is None
        or not editor.active
        or not hmac.compare_digest(stamp, session_stamp(request.app.state.secret, editor.name, editor.password_hash))
    ):
        if name:  # a stale session (deactivated, deleted, password changed): forget it
            request.session.pop("editor", None)
            request.session.pop("stamp", None)
        raise SignInRequired(current_path(request) if request.method == "GET" else None)
    account = Account(name=editor.name, role=editor.role)
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
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
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
