"""The review screen: claim the next draft, read it, edit it, decide, and its history.

Decisions (approve, reject) redirect to /review, which claims the next draft: the editor goes
from draft to draft without returning to the queue. Errors an editor can cause (a stale edit, a
missing reason, a lost lease) re-render the draft page with the message and a 4xx status.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from review.checks import check_rows, draft_flags
from review.diff import word_diff
from review.forms import parse_int
from review.lookups import model_version_name
from review.pages import as_utc, flash, render
from review.security import Account, Db, SignedIn
from storage.accounts import desk_setting, rejection_reasons
from storage.db import Database
from storage.drafts import categories, get_draft
from storage.errors import ConflictError, DraftflowError, NotFoundError, TransitionError
from storage.models import DraftStatus, utcnow
from storage.queue import QUEUES, heartbeat, release, sweep_expired
from tasks.review import actions

router = APIRouter()

DraftId = Annotated[int, Path(ge=1, le=2**62)]
SKIP_MEMORY = 50  # drafts a session passes over when claiming; older skips may come back
MAX_TEXT = 200_000  # characters: a draft is a page or two, this only stops absurd posts


@router.get("/review")
def review_next(request: Request, account: SignedIn, db: Db) -> Response:
    """Claim the next draft (or get back the one already held) and open it.

    The queue and category chosen last are kept in the session, so "next draft" after a decision
    stays in the same queue. A claim by GET is deliberate: it is what the Review link does, so the
    most a link from elsewhere can do is hand the editor their next draft (which they can skip);
    every decision and edit is a POST with the CSRF token.
    """
    choice = request.session.get("review", {"queue": DraftStatus.PENDING.value, "category": ""})
    if "queue" in request.query_params or "category" in request.query_params:
        choice = {
            "queue": request.query_params.get("queue") or DraftStatus.PENDING.value,
            "category": request.query_params.get("category", ""),
        }
        if choice["queue"] not in QUEUES:
            raise DraftflowError(f"unknown queue {choice['queue']!r} (one of: {', '.join(QUEUES)})")
        request.session["review"] = choice
    sweep_expired(db)  # leases that ran out go back to the queue before we pick (no cron needed)
    draft = actions.claim(
        db,
        account.name,
        category=choice["category"] or None,
        queue=choice["queue"],
        skipped=request.session.get("skipped", []),
    )
    if draft is None:
        return render(
            request,
            "empty.html",
            {"active": "review", "choice": choice, "categories": categories(db), "queues": QUEUES},
        )
    return RedirectResponse(f"/drafts/{draft.id}", status_code=303)


@router.get("/drafts/{draft_id}")
def draft_page(request: Request, draft_id: DraftId, account: SignedIn, db: Db) -> Response:
    return _draft_page(request, db, account, draft_id)


@router.post("/drafts/{draft_id}/edit")
def save_edit(
    request: Request,
    draft_id: DraftId,
    account: SignedIn,
    db: Db,
    text: Annotated[str, Form()] = "",
    expected_version: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    text = text.replace("\r\n", "\n")  # browsers send CRLF from a textarea; keep the stored text's newlines
    try:
        _must_hold(db, account, draft_id)
        if len(text) > MAX_TEXT:
            raise DraftflowError(f"the text is longer than {MAX_TEXT:,} characters")
        version = parse_int(expected_version, "version")
        draft = actions.edit(db, draft_id, account.name, text, note.strip() or None, expected_version=version)
    except (ConflictError, TransitionError) as exc:
        return _draft_page(request, db, account, draft_id, error=str(exc), status_code=409, unsaved=text)
    except NotFoundError:
        raise
    except DraftflowError as exc:
        return _draft_page(request, db, account, draft_id, error=str(exc), status_code=400, unsaved=text)
    flash(request, f"Saved: draft {draft_id} is now version {draft.version}.", "success")
    return RedirectResponse(f"/drafts/{draft_id}", status_code=303)


@router.post("/drafts/{draft_id}/approve")
def approve(
    request: Request, draft_id: DraftId, account: SignedIn, db: Db, note: Annotated[str, Form()] = ""
) -> Response:
    try:
        _must_hold(db, account, draft_id)
        draft = actions.approve(db, draft_id, account.name, note.strip() or None)
    except NotFoundError:
        raise
    except DraftflowError as exc:
        return _draft_page(request, db, account, draft_id, error=str(exc), status_code=_status(exc))
    if draft.status == DraftStatus.APPROVED.value:
        flash(request, f"Approved draft {draft_id}.", "success")
    else:
        required = desk_setting(db, "required_reviews")
        flash(
            request,
            f"Draft {draft_id}: approval {draft.approvals} of {required} recorded; "
            "it goes back to the queue for another editor.",
            "success",
        )
    return RedirectResponse("/review", status_code=303)


@router.post("/drafts/{draft_id}/reject")
def reject(
    request: Request,
    draft_id: DraftId,
    account: SignedIn,
    db: Db,
    reason: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    try:
        _must_hold(db, account, draft_id)
        if not reason.strip():
            raise DraftflowError("choose a reason to reject the draft")
        actions.reject(db, draft_id, account.name, reason, note.strip() or None)
    except NotFoundError:
        raise
    except DraftflowError as exc:
        return _draft_page(request, db, account, draft_id, error=str(exc), status_code=_status(exc))
    flash(request, f"Rejected draft {draft_id}.", "success")
    return RedirectResponse("/review", status_code=303)


@router.post("/drafts/{draft_id}/skip")
def skip(request: Request, draft_id: DraftId, account: SignedIn, db: Db) -> Response:
    """Give the draft back to its queue untouched and go to the next one.

    The session remembers the last SKIP_MEMORY skipped drafts, and the claim passes them over, so
    the draft just given back (the oldest) does not come straight back to this editor.
    """
    try:
        release(db, draft_id, account.name)
    except NotFoundError:
        raise
    except DraftflowError as exc:
        return _draft_page(request, db, account, draft_id, error=str(exc), status_code=_status(exc))
    request.session["skipped"] = [draft_id, *request.session.get("skipped", [])][:SKIP_MEMORY]
    flash(request, f"Skipped draft {draft_id}: it is back in the queue for someone else.", "info")
    return RedirectResponse("/review", status_code=303)


@router.post("/drafts/{draft_id}/heartbeat")
def renew_lease(draft_id: DraftId, account: SignedIn, db: Db) -> Response:
    """Called by the page's script every minute while the editor works: keeps the lease alive."""
    try:
        expires = heartbeat(db, draft_id, account.name, lease_minutes=desk_setting(db, "lease_minutes"))
    except NotFoundError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except DraftflowError as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    return JSONResponse({"expires_at": as_utc(expires).isoformat()})


@router.post("/drafts/{draft_id}/comment")
def add_comment(
    request: Request, draft_id: DraftId, account: SignedIn, db: Db, body: Annotated[str, Form()] = ""
) -> Response:
    try:
        actions.comment(db, draft_id, account.name, body)
    except NotFoundError:
        raise
    except DraftflowError as exc:
        return _draft_page(request, db, account, draft_id, error=str(exc), status_code=400)
    flash(request, "Comment added.", "success")
    return RedirectResponse(f"/drafts/{draft_id}#comments", status_code=303)


@router.get("/drafts/{draft_id}/history")
def draft_history(request: Request, draft_id: DraftId, account: SignedIn, db: Db) -> Response:
    draft, prompt, _ = get_draft(db, draft_id)
    return render(
        request,
        "history.html",
        {"active": "queue", "draft": draft, "prompt": prompt, "items": actions.history(db, draft_id)},
    )


def _draft_page(
    request: Request,
    db: Database,
    account: Account,
    draft_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
    unsaved: str | None = None,
) -> Response:
    draft, prompt, _ = get_draft(db, draft_id)
    lease = as_utc(draft.lease_expires_at)
    mine = (
        draft.status == DraftStatus.IN_REVIEW.value
        and draft.claimed_by == account.name
        and lease is not None
        and lease > utcnow()
    )
    flags = draft_flags(draft.flags, draft.scores or {})
    comments = [item for item in actions.history(db, draft_id) if item["kind"] == "comment"]
    context: dict[str, Any] = {
        "active": "review",
        "draft": draft,
        "prompt": prompt,
        "mine": mine,
        "lease": lease,
        "flags": flags,
        "checks": check_rows(draft.scores or {}, flags),
        "diff": word_diff(draft.original_text, draft.current_text),
        "edited": draft.current_text != draft.original_text,
        "reasons": rejection_reasons(db),
        "model_version": model_version_name(db, draft.model_version_id),
        "comments": comments,
        "unsaved": unsaved if unsaved and unsaved.strip() and unsaved != draft.current_text else None,
        "lease_minutes": desk_setting(db, "lease_minutes"),
    }
    return render(request, "draft.html", context, status_code=status_code, error=error)


def _must_hold(db: Database, account: Account, draft_id: int) -> None:
    """Decisions on the desk need the draft's claim: no deciding on a draft someone else may be reading."""
    draft, _, _ = get_draft(db, draft_id)
    if draft.status != DraftStatus.IN_REVIEW.value or draft.claimed_by != account.name:
        holder = f"{draft.claimed_by} is reviewing it" if draft.claimed_by else f"it is {draft.status}"
        raise ConflictError(f"you do not hold draft {draft_id} ({holder}); take a draft with “Next draft”")


def _status(exc: DraftflowError) -> int:
    return 409 if isinstance(exc, ConflictError | TransitionError) else 400
