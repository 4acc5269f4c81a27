"""Sign-in and sign-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from review.pages import bounce, render
from review.security import Db, cross_site, current_path, new_csrf_token, safe_next, session_stamp
from storage.accounts import authenticate

router = APIRouter()


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    if cross_site(request):  # see review.pages.bounce: do not replace a session the browser did not send
        return bounce(request, safe_next(current_path(request)))
    if request.session.get("editor"):
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
    editor = authenticate(db, name.strip(), password)
    if editor is None:
        return render(
            request,
            "login.html",
            {"next": safe_next(next), "name": name},
            status_code=400,
            error="Wrong name or password, or the account is not active.",
        )
    # A fresh session on sign-in: nothing from the anonymous session (a planted token) carries over.
    request.session.clear()
    request.session.update(
        editor=editor.name, stamp=session_stamp(request.app.state.secret, editor.name, editor.password_hash)
    )
    new_csrf_token(request)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
