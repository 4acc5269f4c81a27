"""Admin screens: editors (create, role, active, password), rejection reasons, desk settings, review guidelines.

Every page here needs the admin role; an editor gets 403. An admin cannot demote or deactivate
their own account, so the desk cannot be left without an admin by a slip of the mouse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from review.forms import parse_int
from review.pages import flash, render
from review.security import AdminOnly, Db
from storage.accounts import (
    DESK_DEFAULTS,
    ROLES,
    DeskSettings,
    create_editor,
    desk_setting,
    list_editors,
    rejection_reasons,
    set_desk_settings,
    set_editor,
    set_password,
    set_rejection_reason,
)
from storage.db import Database
from storage.desk_sessions import end_all
from storage.drafts import categories
from storage.errors import DraftflowError
from storage.guidelines import ALL_CATEGORIES, MAX_TEXT, heading, list_guidelines, set_guideline
from storage.params import bounds

router = APIRouter(prefix="/admin")

SETTING_HELP = {key: field.description or "" for key, field in DeskSettings.model_fields.items()}


@router.get("")
def admin_home(account: AdminOnly) -> Response:
    return RedirectResponse("/admin/editors", status_code=303)


@router.get("/editors")
def editors_page(request: Request, account: AdminOnly, db: Db) -> Response:
    return _editors(request, db)


@router.post("/editors")
def add_editor(
    request: Request,
    account: AdminOnly,
    db: Db,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "editor",
) -> Response:
    return _apply(
        request,
        "/admin/editors",
        lambda: create_editor(db, name.strip(), password, role),
        f"Editor {name.strip()} created.",
        lambda error: _editors(request, db, error),
    )


@router.post("/editors/{name}/role")
def change_role(request: Request, name: str, account: AdminOnly, db: Db, role: Annotated[str, Form()] = "") -> Response:
    def change() -> None:
        if name == account.name and role != "admin":
            raise DraftflowError("you cannot remove your own admin role: ask another admin")
        set_editor(db, name, role=role)

    return _apply(
        request, "/admin/editors", change, f"{name} is now {role}.", lambda error: _editors(request, db, error)
    )


@router.post("/editors/{name}/active")
def change_active(
    request: Request, name: str, account: AdminOnly, db: Db, active: Annotated[str, Form()] = ""
) -> Response:
    wanted = active == "1"

    def change() -> None:
        if name == account.name and not wanted:
            raise DraftflowError("you cannot deactivate your own account: ask another admin")
        set_editor(db, name, active=wanted)
        if not wanted:
            end_all(db, name)  # now, not at their next request

    message = f"{name} can sign in again." if wanted else f"{name} is deactivated and signed out."
    return _apply(request, "/admin/editors", change, message, lambda error: _editors(request, db, error))


@router.post("/editors/{name}/password")
def reset_password(
    request: Request, name: str, account: AdminOnly, db: Db, password: Annotated[str, Form()] = ""
) -> Response:
    def change() -> None:
        set_password(db, name, password)
        if name != account.name:  # an admin resetting their own password keeps this session
            end_all(db, name)

    return _apply(
        request,
        "/admin/editors",
        change,
        f"Password of {name} changed; their other sessions are signed out.",
        lambda error: _editors(request, db, error),
    )


@router.get("/reasons")
def reasons_page(request: Request, account: AdminOnly, db: Db) -> Response:
    return _reasons(request, db)


@router.post("/reasons")
def add_reason(
    request: Request, account: AdminOnly, db: Db, code: Annotated[str, Form()] = "", label: Annotated[str, Form()] = ""
) -> Response:
    code = code.strip().lower()
    return _apply(
        request,
        "/admin/reasons",
        lambda: set_rejection_reason(db, code, label.strip() or None, True),
        f"Reason {code} saved.",
        lambda error: _reasons(request, db, error),
    )


@router.post("/reasons/{code}/active")
def change_reason(
    request: Request, code: str, account: AdminOnly, db: Db, active: Annotated[str, Form()] = ""
) -> Response:
    wanted = active == "1"
    return _apply(
        request,
        "/admin/reasons",
        lambda: set_rejection_reason(db, code, None, wanted),
        f"Reason {code} {'restored' if wanted else 'retired'}.",
        lambda error: _reasons(request, db, error),
    )


@router.get("/settings")
def settings_page(request: Request, account: AdminOnly, db: Db) -> Response:
    return _settings(request, db)


@router.post("/settings")
def save_settings(
    request: Request,
    account: AdminOnly,
    db: Db,
    required_reviews: Annotated[str, Form()] = "",
    lease_minutes: Annotated[str, Form()] = "",
    undo_minutes: Annotated[str, Form()] = "",
) -> Response:
    def save() -> None:
        values = {
            "required_reviews": parse_int(required_reviews, "number of reviews"),
            "lease_minutes": parse_int(lease_minutes, "lease length"),
            "undo_minutes": parse_int(undo_minutes, "undo window"),
        }
        for key, value in values.items():
            if value is None:
                raise DraftflowError(f"{key} is needed")
        set_desk_settings(db, values)  # checked against DeskSettings' bounds, all or none

    return _apply(request, "/admin/settings", save, "Desk settings saved.", lambda error: _settings(request, db, error))


@router.get("/guidelines")
def guidelines_page(request: Request, account: AdminOnly, db: Db) -> Response:
    return _guidelines(request, db)


@router.post("/guidelines")
def save_guidelines(
    request: Request,
    account: AdminOnly,
    db: Db,
    category: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
) -> Response:
    category = category.strip()
    return _apply(
        request,
        "/admin/guidelines",
        lambda: set_guideline(db, category, text, account.name),
        f"{'Saved' if text.strip() else 'Removed'} guidelines for {heading(category)}.",
        lambda error: _guidelines(request, db, error, {category: text}),
    )


def _apply(
    request: Request, back: str, change: Callable[[], object], done: str, page: Callable[[str], Response]
) -> Response:
    """Run an admin change: on success flash and go back (POST-redirect-GET), on error show the page with it."""
    try:
        change()
    except DraftflowError as exc:
        return page(str(exc))
    flash(request, done, "success")
    return RedirectResponse(back, status_code=303)


def _editors(request: Request, db: Database, error: str | None = None) -> Response:
    return render(
        request,
        "admin_editors.html",
        {"active": "admin", "tab": "editors", "editors": list_editors(db), "roles": ROLES},
        status_code=400 if error else 200,
        error=error,
    )


def _reasons(request: Request, db: Database, error: str | None = None) -> Response:
    return render(
        request,
        "admin_reasons.html",
        {"active": "admin", "tab": "reasons", "reasons": rejection_reasons(db, include_inactive=True)},
        status_code=400 if error else 200,
        error=error,
    )


def _settings(request: Request, db: Database, error: str | None = None) -> Response:
    values = [
        (key, desk_setting(db, key), SETTING_HELP.get(key, ""), bounds(DeskSettings, key)) for key in DESK_DEFAULTS
    ]
    return render(
        request,
        "admin_settings.html",
        {"active": "admin", "tab": "settings", "settings": values},
        status_code=400 if error else 200,
        error=error,
    )


def _guidelines(
    request: Request, db: Database, error: str | None = None, typed: dict[str, str] | None = None
) -> Response:
    """One form per category: "*" first, then every category with drafts or a guideline.

    `typed` keeps the text of a refused save in its form."""
    saved = {g.category: g for g in list_guidelines(db)}
    names = [ALL_CATEGORIES, *sorted((set(categories(db)) | set(saved)) - {ALL_CATEGORIES})]
    forms = [
        {
            "category": name,
            "heading": heading(name),
            "text": (typed or {}).get(name, saved[name].text if name in saved else ""),
            "guideline": saved.get(name),
        }
        for name in names
    ]
    return render(
        request,
        "admin_guidelines.html",
        {"active": "admin", "tab": "guidelines", "forms": forms, "max_text": MAX_TEXT},
        status_code=400 if error else 200,
        error=error,
    )
