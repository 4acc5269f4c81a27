"""The review screen: claim a draft, read it, edit it, decide, undo, and its history.

One form carries the draft's text to every decision: Approve, Reject and Skip post the text box
with them, and a text that differs from the stored one is saved first as a revision (the edit's
own rules: a stale version is refused and nothing is decided). So typed text is never dropped by
a click, a shortcut or a form submitted without the page's script; leaving the page any other
way with unsaved text is warned by the browser (review/static/desk.js).

Decisions redirect to /review, which claims the next draft: the editor goes from draft to draft
without returning to the queue, with an Undo offer for the decision just made. Errors an editor
can cause (a stale edit, a missing reason, a lost lease) re-render the draft page with the message,
their unsaved text and a 4xx status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from review.checks import check_rows, draft_flags
from review.diff import word_diff
from review.explain import explain_draft, explainer_for
from review.forms import parse_int
from review.lookups import model_version_name
from review.pages import as_utc, flash, render
from review.security import Account, AdminOnly, Db, SignedIn
from storage.accounts import desk_setting, rejection_reasons
from storage.db import Database
from storage.drafts import categories, get_draft
from storage.errors import ConflictError, DraftflowError, NotFoundError, TransitionError
from storage.models import Draft, DraftStatus, utcnow
from storage.queue import QUEUES, claim_by_id, decided_today, heartbeat, lease_state, queue_left, release, sweep_expired
from tasks.review import actions

router = APIRouter()

DraftId = Annotated[int, Path(ge=1, le=2**62)]
SKIP_MEMORY = 50  # drafts a session passes over when claiming; older skips may come back
MAX_TEXT = 200_000  # characters: a draft is a page or two, this only stops absurd posts
Text = Annotated[str | None, Form()]
Note = Annotated[str, Form()]


@router.get("/review")
def review_next(request: Request, account: SignedIn, db: Db) -> Response:
    """Claim the next draft (or get back the one already held) and open it.

    The queue and category chosen last are kept in the session, so "next draft" after a decision
    stays in the same queue. An editor holds one draft at a time: asking for another queue while
    holding a draft opens the held one and says why. A claim by GET is deliberate: it is what the
    Review link does, so the most a link from elsewhere can do is hand the editor their next draft
    (which they can skip); every decision and edit is a POST with the CSRF token.
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
    sweep_expired(db)  # leases that ran out (past their grace) go back to the queue before we pick
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
            {
                "active": "review",
                "choice": choice,
                "categories": categories(db),
                "queues": QUEUES,
                "undo_offer": _undo_offer(request, db, account),
            },
        )
    wanted_category = choice["category"] or None
    if draft.claimed_from != choice["queue"] or (wanted_category and draft.category != wanted_category):
        where = f"the {draft.claimed_from or 'pending'} queue" + (f", {draft.category}" if draft.category else "")
        flash(
            request,
            f"You still hold draft {draft.id} (from {where}): decide or skip it, and the next draft comes "
            f"from the {choice['queue']} queue{', ' + wanted_category if wanted_category else ''}.",
            "info",
        )
    return RedirectResponse(f"/drafts/{draft.id}", status_code=303)


@router.get("/drafts/{draft_id}")
def draft_page(request: Request, draft_id: DraftId, account: SignedIn, db: Db) -> Response:
    return _draft_page(request, db, account, draft_id)


@router.post("/drafts/{draft_id}/claim")
def claim_this(request: Request, draft_id: DraftId, account: SignedIn, db: Db, text: Text = None) -> Response:
    """Review this draft: claim it from its page (found in the queue or a search), or take back a
    lease that ran out. Text posted with it (the box of a page whose lease was lost) is restored."""
    sweep_expired(db)
    try:
        draft, given_back = claim_by_id(
            db,
            draft_id,
            account.name,
            lease_minutes=desk_setting(db, "lease_minutes"),
            exclude_approved_by_editor=desk_setting(db, "required_reviews") > 1,
        )
    except NotFoundError:
        raise
    except DraftflowError as exc:
        return _draft_page(request, db, account, draft_id, error=str(exc), status_code=409, unsaved=_clean(text))
    if given_back is not None:
        flash(request, f"Draft {given_back} went back to its queue untouched: you now review draft {draft_id}.", "info")
    restored = _clean(text)
    if restored is not None and restored != draft.current_text:
        return _draft_page(request, db, account, draft_id, restored=restored)
    return RedirectResponse(f"/drafts/{draft_id}", status_code=303)


@router.post("/drafts/{draft_id}/edit")
def save_edit(
    request: Request,
    draft_id: DraftId,
    account: SignedIn,
    db: Db,
    text: Text = None,
    expected_version: Note = "",
    edit_note: Note = "",
) -> Response:
    text = _clean(text) or ""
    try:
        draft = _save(request, db, account, draft_id, text, expected_version, edit_note)
    except DraftflowError as exc:
        return _refused(request, db, account, draft_id, exc, text)
    if draft is None:
        flash(request, "Nothing to save: the text is unchanged.", "info")
    else:
        flash(request, f"Saved: draft {draft_id} is now version {draft.version}.", "success")
    return RedirectResponse(f"/drafts/{draft_id}", status_code=303)


@router.post("/drafts/{draft_id}/approve")
def approve(
    request: Request,
    draft_id: DraftId,
    account: SignedIn,
    db: Db,
    note: Note = "",
    text: Text = None,
    expected_version: Note = "",
    edit_note: Note = "",
) -> Response:
    text = _clean(text)
    try:
        saved = _save(request, db, account, draft_id, text, expected_version, edit_note)
        draft = actions.approve(db, draft_id, account.name, note, holder_only=True)
    except DraftflowError as exc:
        return _refused(request, db, account, draft_id, exc, text)
    if draft.status == DraftStatus.APPROVED.value:
        message = f"Approved draft {draft_id}"
    else:
        required = desk_setting(db, "required_reviews")
        message = (
            f"Draft {draft_id}: approval {draft.approvals} of {required} recorded; "
            "it goes back to the queue for another editor"
        )
    _decided(request, draft_id, "approval", message + _saved_note(saved))
    return RedirectResponse("/review", status_code=303)


@router.post("/drafts/{draft_id}/reject")
def reject(
    request: Request,
    draft_id: DraftId,
    account: SignedIn,
    db: Db,
    reason: Note = "",
    note: Note = "",
    text: Text = None,
    expected_version: Note = "",
    edit_note: Note = "",
) -> Response:
    text = _clean(text)
    try:
        if not reason.strip():
            raise DraftflowError("choose a reason to reject the draft")
        saved = _save(request, db, account, draft_id, text, expected_version, edit_note)
        actions.reject(db, draft_id, account.name, reason, note, holder_only=True)
    except DraftflowError as exc:
        return _refused(request, db, account, draft_id, exc, text)
    _decided(request, draft_id, "rejection", f"Rejected draft {draft_id}" + _saved_note(saved))
    return RedirectResponse("/review", status_code=303)


@router.post("/drafts/{draft_id}/skip")
def skip(
    request: Request,
    draft_id: DraftId,
    account: SignedIn,
    db: Db,
    text: Text = None,
    expected_version: Note = "",
    edit_note: Note = "",
) -> Response:
    """Give the draft back to its queue and go to the next one; typed text is saved first.

    The session remembers the last SKIP_MEMORY skipped drafts, and the claim passes them over, so
    the draft just given back (the oldest) does not come straight back to this editor.
    """
    text = _clean(text)
    try:
        saved = _save(request, db, account, draft_id, text, expected_version, edit_note)
        release(db, draft_id, account.name)
    except DraftflowError as exc:
        return _refused(request, db, account, draft_id, exc, text)
    request.session["skipped"] = [draft_id, *request.session.get("skipped", [])][:SKIP_MEMORY]
    flash(request, f"Skipped draft {draft_id}: it is back in the queue for someone else{_saved_note(saved)}.", "info")
    return RedirectResponse("/review", status_code=303)


@router.post("/drafts/{draft_id}/undo")
def undo(request: Request, draft_id: DraftId, account: SignedIn, db: Db) -> Response:
    """Take back the editor's own last decision on this draft (within the undo window)."""
    try:
        _, given_back = actions.undo(db, draft_id, account.name)
    except NotFoundError:
        raise
    except DraftflowError as exc:
        return _draft_page(request, db, account, draft_id, error=str(exc), status_code=409)
    request.session.pop("last_decision", None)
    back = f" Draft {given_back} went back to its queue untouched." if given_back else ""
    flash(request, f"Undone: draft {draft_id} is yours to review again.{back}", "success")
    return RedirectResponse(f"/drafts/{draft_id}", status_code=303)


@router.post("/drafts/{draft_id}/reopen")
def reopen(request: Request, draft_id: DraftId, account: AdminOnly, db: Db, note: Note = "") -> Response:
    """An admin sends a decided draft back to the pending queue (after the editor's undo window)."""
    try:
        actions.reopen(db, draft_id, account.name, note)
    except NotFoundError:
        raise
    except DraftflowError as exc:
        return _draft_page(request, db, account, draft_id, error=str(exc), status_code=_status(exc))
    flash(request, f"Reopened draft {draft_id}: it is back in the pending queue.", "success")
    return RedirectResponse(f"/drafts/{draft_id}", status_code=303)


@router.post("/drafts/{draft_id}/heartbeat")
def renew_lease(draft_id: DraftId, account: SignedIn, db: Db) -> Response:
    """Called by the page's script while the editor works (every third of the lease): keeps it alive."""
    try:
        expires = heartbeat(db, draft_id, account.name, lease_minutes=desk_setting(db, "lease_minutes"))
    except NotFoundError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except DraftflowError as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    return JSONResponse({"expires_at": as_utc(expires).isoformat(), "left_ms": _left_ms(expires)})


@router.post("/drafts/{draft_id}/comment")
def add_comment(request: Request, draft_id: DraftId, account: SignedIn, db: Db, body: Note = "") -> Response:
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


def _save(
    request: Request,
    db: Database,
    account: Account,
    draft_id: int,
    text: str | None,
    expected_version: str,
    note: str,
) -> Draft | None:
    """Save the posted text as a revision when it differs from the stored one; None when unchanged."""
    draft, _, _ = get_draft(db, draft_id)
    if text is None or text == draft.current_text:
        return None
    if len(text) > MAX_TEXT:
        raise DraftflowError(f"the text is longer than {MAX_TEXT:,} characters")
    version = parse_int(expected_version, "version")
    index = explainer_for(request.app.state).ngram_index(draft)
    return actions.edit(db, draft_id, account.name, text, note, expected_version=version, holder_only=True, index=index)


def _refused(
    request: Request, db: Database, account: Account, draft_id: int, exc: DraftflowError, text: str | None
) -> Response:
    if isinstance(exc, NotFoundError):
        raise exc
    return _draft_page(request, db, account, draft_id, error=str(exc), status_code=_status(exc), unsaved=text)


def _decided(request: Request, draft_id: int, what: str, message: str) -> None:
    flash(request, message + ".", "success")
    request.session["last_decision"] = {"id": draft_id, "what": what}


def _saved_note(saved: Draft | None) -> str:
    return f" (your text was saved first as version {saved.version})" if saved is not None else ""


def _clean(text: str | None) -> str | None:
    # browsers send CRLF from a textarea; keep the stored text's newlines
    return None if text is None else text.replace("\r\n", "\n")


def _undo_offer(request: Request, db: Database, account: Account) -> dict[str, Any] | None:
    """The decision just made, while it can still be undone (shown as an Undo button)."""
    last = request.session.get("last_decision")
    if not isinstance(last, dict) or not isinstance(last.get("id"), int):
        return None
    if not actions.undoable(db, last["id"], account.name):
        request.session.pop("last_decision", None)
        return None
    return last


def _draft_page(
    request: Request,
    db: Database,
    account: Account,
    draft_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
    unsaved: str | None = None,
    restored: str | None = None,
) -> Response:
    draft, prompt, _ = get_draft(db, draft_id)
    state = lease_state(draft, account.name)
    flags = draft_flags(draft.flags, draft.scores or {})
    comments = [item for item in actions.history(db, draft_id) if item["kind"] == "comment"]
    queue = draft.claimed_from if state in ("held", "lost") else request.session.get("review", {}).get("queue")
    queue = queue if queue in QUEUES else DraftStatus.PENDING.value
    decided = draft.status in actions.DECIDED
    context: dict[str, Any] = {
        "active": "review",
        "draft": draft,
        "prompt": prompt,
        "mine": state == "held",
        "lease_state": state,
        "lease": as_utc(draft.lease_expires_at),
        # the script counts down from what is left, not from the server's clock time: the editor's
        # computer clock may be minutes off
        "lease_left_ms": _left_ms(draft.lease_expires_at),
        "can_claim": draft.status in QUEUES or state == "lost",
        "flags": flags,
        "checks": check_rows(draft.scores or {}, flags),
        "diff": word_diff(draft.original_text, draft.current_text),
        "edited": draft.current_text != draft.original_text,
        "reasons": rejection_reasons(db),
        "model_version": model_version_name(db, draft.model_version_id),
        "comments": comments,
        "unsaved": unsaved if unsaved and unsaved.strip() and unsaved != draft.current_text else None,
        "box_text": restored if restored is not None else draft.current_text,
        "restored": restored is not None,
        "lease_minutes": desk_setting(db, "lease_minutes"),
        "queue": queue,
        "left": queue_left(db, queue),
        "today": decided_today(db, account.name),
        "guidelines": _guidelines(db, draft.category or prompt.category),
        "explained": explain_draft(request.app.state, draft, prompt.text),
        "undo_offer": _undo_offer(request, db, account),
        "can_undo": decided and actions.undoable(db, draft_id, account.name),
        "can_reopen": decided and account.is_admin,
    }
    return render(request, "draft.html", context, status_code=status_code, error=error)


def _guidelines(db: Database, category: str | None) -> list[tuple[str, str]]:
    from storage.guidelines import guideline_for

    return guideline_for(db, category)


def _left_ms(expires: datetime | None) -> int:
    return 0 if expires is None else max(0, int((as_utc(expires) - utcnow()).total_seconds() * 1000))


def _status(exc: DraftflowError) -> int:
    return 409 if isinstance(exc, ConflictError | TransitionError) else 400
