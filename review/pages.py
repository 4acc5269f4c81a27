"""Rendering: the Jinja2 environment (autoescape always on), the page helper and flash messages.

Generated text is untrusted: templates print it with `{{ }}` only, which escapes it here. Nothing
in the desk marks draft or prompt text `|safe`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from review.security import csrf_token

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


@overload
def as_utc(at: datetime) -> datetime: ...
@overload
def as_utc(at: None) -> None: ...
def as_utc(at: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time the desk stores is UTC."""
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _when(at: datetime | str | None) -> str:
    if at is None:
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return f"{as_utc(at):%Y-%m-%d %H:%M:%S} UTC"


def _iso(at: datetime | None) -> str:
    at = as_utc(at)
    return at.isoformat() if at else ""


def _percent(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f} %"


def _number(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{float(value):,.{digits}f}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, iso=_iso, percent=_percent, number=_number)
    return env


templates = Jinja2Templates(env=_environment())


def flash(request: Request, message: str, kind: str = "info") -> None:
    """A message shown once, on the next page rendered (after a redirect)."""
    request.session.setdefault("flash", [])
    request.session["flash"] = [*request.session["flash"], [kind, message]]


def bounce(request: Request, url: str) -> Response:
    """Reload `url` from the desk's own page, without touching the session.

    The session cookie is SameSite=strict, so a link from another site (mail, chat) arrives without
    it. Answering that request with the sign-in page would replace the editor's session cookie with
    an anonymous one and sign them out. This page reloads the address as a same-site navigation,
    which carries the cookie; only then does the desk decide whether the editor is signed in.
    """
    return templates.TemplateResponse(request, "bounce.html", {"url": url}, headers={"Cache-Control": "no-store"})


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200, error: str | None = None
) -> Response:
    flashes = request.session.pop("flash", []) if "flash" in request.session else []
    if error:
        flashes = [*flashes, ["error", error]]
    page = {
        "request": request,
        "account": getattr(request.state, "account", None),
        "csrf_token": csrf_token(request),
        "flashes": flashes,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, page, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"  # pages show drafts and tokens: never cache them
    return response
