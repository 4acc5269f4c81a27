"""Rendering: the Jinja2 environment (autoescape always on), the page helper and flash messages.

Generated text is untrusted: templates print it with `{{ }}` only, which escapes it here. Nothing
in the desk marks draft or prompt text `|safe`; the one filter that returns markup for it,
`visible_controls`, escapes the text itself and adds only its own fixed `<span class="ctrl">` markers.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, overload

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
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


# Characters that change or hide what an editor reads without showing themselves: bidi embeddings,
# overrides and isolates (U+202A-U+202E, U+2066-U+2069, which can reverse a sentence), zero-width
# characters, the soft hyphen, the byte-order mark, and every other control or format character.
# Newlines and tabs are layout, not hidden text.
_SHOWN_AS_IS = frozenset("\n\t")
_ALWAYS_MARKED = [(0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2064), (0x2066, 0x2069), (0xFEFF, 0xFEFF)]
_ALWAYS_MARKED += [(0xAD, 0xAD)]


@cache
def _controls() -> re.Pattern[str]:
    marked = {chr(c) for low, high in _ALWAYS_MARKED for c in range(low, high + 1)}
    marked |= {
        ch for c in range(sys.maxunicode + 1) if unicodedata.category(ch := chr(c)) in ("Cc", "Cf")
    } - _SHOWN_AS_IS
    ranges: list[tuple[int, int]] = []
    for c in sorted(map(ord, marked)):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    return re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]")


def control_name(ch: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`; C0/C1 controls have no name in the Unicode database."""
    return f"U+{ord(ch):04X} " + unicodedata.name(ch, "CONTROL CHARACTER")


def control_count(text: str | None) -> int:
    """How many invisible or bidi control characters `text` holds (for a "contains N invisible characters" notice)."""
    return len(_controls().findall(text)) if text else 0


def visible_controls(text: str | None) -> Markup:
    """Escape `text` and show each invisible or bidi control character as a visible `⟨U+XXXX⟩` marker.

    The controls themselves are not kept: a right-to-left override in generated text can no longer
    reverse what the editor reads. Everything else is escaped exactly as `{{ }}` would escape it.
    """
    if not text:
        return Markup("")
    parts: list[str] = []
    last = 0
    for match in _controls().finditer(text):
        ch = match.group()
        parts.append(escape(text[last : match.start()]))
        parts.append(Markup('<span class="ctrl" title="{}">⟨U+{:04X}⟩</span>').format(control_name(ch), ord(ch)))
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when,
        iso=_iso,
        percent=_percent,
        number=_number,
        visible_controls=visible_controls,
        control_count=control_count,
    )
    env.globals["control_count"] = control_count
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
