"""Sign-in and sign-out, with the rate limit and lockout of storage.sign_in_limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from review.pages import bounce, render
from review.security import (
    Db,
    client_address,
    close_session,
    cross_site,
    current_account,
    current_path,
    open_session,
    safe_next,
)
from storage import sign_in_limits
from storage.accounts import authenticate

router = APIRouter()

REFUSED = "Wrong name or password, or the account is not active."


@router.get("/login")
def login_page(request: Request, db: Db, next: str = "/") -> Response:
    if cross_site(request):  # see review.pages.bounce: do not replace a session the browser did not send
        return bounce(request, safe_next(current_path(request)))
    if current_account(request, db) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"next": safe_next(next), "name": ""})


@router.post("/login")
def login(
    request: Request,
    db: Db,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    name = name.strip()
    address = client_address(request)
    # Locked: refused before the password is checked, with the same words whether or not it was right.
    lock = sign_in_limits.begin_attempt(db, name, address)
    editor = None if lock is not None else authenticate(db, name, password)
    if editor is None:
        if lock is None:
            lock = sign_in_limits.failed(db, name, address)
        return _refused(request, name, next, lock)
    sign_in_limits.succeeded(db, name)
    open_session(request, db, editor)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, db: Db) -> Response:
    close_session(request, db)
    return RedirectResponse("/login", status_code=303)


def _refused(request: Request, name: str, next: str, lock: sign_in_limits.Lock | None) -> Response:
    if lock is None:
        return render(request, "login.html", {"next": safe_next(next), "name": name}, status_code=400, error=REFUSED)
    minutes = lock.minutes_left()
    error = f"{REFUSED} Too many attempts, try again in {minutes} minute{'s' if minutes != 1 else ''}."
    page = render(request, "login.html", {"next": safe_next(next), "name": name}, status_code=429, error=error)
    page.headers["Retry-After"] = str(minutes * 60)
    return page
