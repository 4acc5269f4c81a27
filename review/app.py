"""The desk's FastAPI app: sessions, security headers, the body size limit, the CSRF check, error
pages and the routes.

Every answer carries SECURITY_HEADERS, errors included: user input gets a 4xx page, and even an
unexpected exception gets a plain 500 page with the headers (Starlette's ServerErrorMiddleware
sends that one outside every other middleware, so the handler adds them itself).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from review.pages import STATIC_DIR, bounce, render
from review.routes import admin, auth, corpus, drafts, queue, reports
from review.secret import resolve_secret
from review.security import CsrfRefused, Forbidden, SignInRequired, cross_site, csrf_guard, login_url, safe_next
from storage import desk_sessions
from storage.db import open_database
from storage.errors import ConflictError, DraftflowError, NotFoundError, TransitionError

SESSION_COOKIE = "draftflow_desk"
# one working day: a forgotten browser does not stay signed in for weeks (the server side ends idle sessions too)
SESSION_HOURS = int(desk_sessions.IDLE_LIMIT.total_seconds() // 3600)
# The largest legitimate post is an edit of a draft at its 200,000-character limit: about 220 KB
# form-encoded for prose. 512 KiB leaves room for accented text and refuses a megabyte note or a
# flood of fields before anything parses them.
MAX_BODY_BYTES = 512 * 1024

# Scripts and styles only from the desk itself: even if some text escaped the templates, an
# injected inline <script> would not run.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def create_app(
    database_url: str, secret_key: str | None = None, https_only: bool = False, home: Path | None = None
) -> FastAPI:
    """The desk over the database at `database_url` (migrated to the latest schema on open).

    `https_only` marks the session cookie Secure: set it whenever the desk is served over HTTPS
    (directly or behind a proxy). The secret key is resolved by review.secret. `home` is the data
    home whose corpus indexes explain flags and show sources (None: the desk shows scores only).
    """
    app = FastAPI(
        title="draftflow desk", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(csrf_guard)]
    )
    app.state.db = open_database(database_url)
    app.state.secret = resolve_secret(database_url, secret_key)
    app.state.home = home
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(
        SessionMiddleware,
        secret_key=app.state.secret,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_HOURS * 3600,
        same_site="strict",
        https_only=https_only,
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (auth, queue, drafts, reports, admin, corpus):
        app.include_router(module.router)
    _add_error_pages(app)
    return app


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (plain ASGI: works for streamed files too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Answers 413 to a request body over `limit` bytes, declared (Content-Length) or streamed (chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and (len(declared) > 18 or int(declared) > self.limit):
            await self._refuse(send)
            return
        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def checked_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # the app turned the cut-off body into an error of its own (a 400): say what happened
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, checked_send)
        except Exception:
            if not exceeded:  # only the cut-off body's consequences are ours to answer
                raise
        if exceeded and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = f"Request too large: the desk accepts at most {self.limit // 1024} KiB.".encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _add_error_pages(app: FastAPI) -> None:
    def error_page(request: Request, status: int, title: str, message: str) -> Response:
        return render(request, "error.html", {"title": title, "message": message}, status_code=status)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        if exc.next_path and cross_site(request):
            return bounce(request, safe_next(exc.next_path))
        return RedirectResponse(login_url(exc.next_path), status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return error_page(request, 403, "Not allowed", "This page is for desk admins only.")

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return error_page(
            request,
            403,
            "Form refused",
            "This form did not carry the desk's security token (it may come from an old page or "
            "another site). Go back, reload the page and try again.",
        )

    @app.exception_handler(DraftflowError)
    async def _draftflow(request: Request, exc: DraftflowError) -> Response:
        if isinstance(exc, NotFoundError):
            return error_page(request, 404, "Not found", str(exc))
        if isinstance(exc, ConflictError | TransitionError):
            return error_page(request, 409, "Conflict", str(exc))
        return error_page(request, 400, "Cannot do that", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = ", ".join(".".join(str(p) for p in err.get("loc", ())[1:]) or "request" for err in exc.errors())
        return error_page(request, 400, "Bad request", f"Some values of this request are not valid: {fields}.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Runs in ServerErrorMiddleware, outside SecurityHeaders: the headers go on here. The page is
        # plain (no template, no session): whatever failed may fail again while rendering it.
        # Starlette re-raises the exception afterwards, so the server still logs its traceback.
        return HTMLResponse(
            "<!doctype html><title>Desk error</title><h1>Something went wrong</h1>"
            "<p>The desk could not answer this request. Try again; if it keeps failing, tell an admin.</p>",
            status_code=500,
            headers={name.decode(): value.decode() for name, value in SECURITY_HEADERS} | {"cache-control": "no-store"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_page(request, 404, "Not found", "There is no page at this address.")
        return error_page(request, exc.status_code, "Error", str(exc.detail))
