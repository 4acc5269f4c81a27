"""Editors' actions on drafts: claim, approve, reject, edit, comment, and what they read.

Kept free of Prefect and torch imports so the review CLI and the web desk start fast. Each action
is one guarded transaction plus its `review_events` row (storage.drafts.transition); leases live
in storage.queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.accounts import check_rejection_reason, desk_setting
from storage.db import Database
from storage.drafts import Decision, get_draft, list_drafts, reloaded_draft, transition
from storage.errors import ConflictError, DraftflowError, NotFoundError
from storage.models import Comment, Draft, DraftRevision, DraftStatus, Prompt, ReviewEvent, utcnow
from storage.queue import claim as claim_draft
from storage.queue import give_back_held, origin_queue
from tasks.review.checks import NgramIndex
from tasks.review.recheck import Recheck, recheck

REVIEWABLE = (DraftStatus.PENDING.value, DraftStatus.IN_REVIEW.value, DraftStatus.FLAGGED.value)
DECIDED = (DraftStatus.APPROVED.value, DraftStatus.REJECTED.value)
MAX_COMMENT = 5000
MAX_NOTE = 2000  # a note on an edit or a decision: a sentence or a paragraph, not a document
CHECKS_ACTOR = "checks"  # who re-ran the checks after an edit, in the history


def claim(
    db: Database,
    editor: str,
    category: str | None = None,
    queue: str = DraftStatus.PENDING.value,
    skipped: Sequence[int] = (),
) -> Draft | None:
    """The editor's next draft (see storage.queue.claim); `skipped` are drafts they just passed on."""
    reviews = desk_setting(db, "required_reviews")
    return claim_draft(
        db,
        _editor(editor),
        category=category,
        queue=queue,
        lease_minutes=desk_setting(db, "lease_minutes"),
        exclude_approved_by_editor=reviews > 1,
        exclude_ids=skipped,
    )


def approve(db: Database, draft_id: int, editor: str, note: str | None = None, holder_only: bool = False) -> Draft:
    """One approval. With `required_reviews` = N, the draft is approved at the N-th approval by
    N different editors; until then it goes back to the queue it came from (a flagged draft stays
    in the flagged queue) with its count. The count is read and raised in the transaction that
    records the approval, with the row locked: concurrent approvals each count once."""
    editor = _editor(editor)
    note = _note(note)
    required = desk_setting(db, "required_reviews")

    def decide(session: Session, draft: Draft) -> Decision:
        if required > 1 and _approved_since_last_change(session, draft_id, editor):
            raise ConflictError(f"{editor} has approved draft {draft_id} already: it needs another editor's review")
        approvals = draft.approvals + 1
        if approvals >= required:
            return Decision(DraftStatus.APPROVED.value, note, {"approvals": approvals})
        back = origin_queue(session, draft_id) if draft.status == DraftStatus.IN_REVIEW.value else draft.status
        return Decision(back, _join(f"approval {approvals} of {required}", note), {"approvals": approvals})

    return transition(
        db,
        draft_id,
        action="approve",
        actor=editor,
        allowed_from=REVIEWABLE,
        release_claim=True,
        holder_only=holder_only,
        decide=decide,
    )


def _approved_since_last_change(session: Session, draft_id: int, editor: str) -> bool:
    """The editor's last approval or undo since the text last changed is an approval (not undone)."""
    last = session.scalar(
        select(ReviewEvent.action)
        .where(
            ReviewEvent.draft_id == draft_id,
            ReviewEvent.actor == editor,
            ReviewEvent.action.in_(["approve", "undo"]),
            ReviewEvent.at >= _last_text_change(session, draft_id),
        )
        .order_by(ReviewEvent.id.desc())
        .limit(1)
    )
    return last == "approve"


def reject(
    db: Database, draft_id: int, editor: str, reason: str, note: str | None = None, holder_only: bool = False
) -> Draft:
    """Reject with a reason code from the configured list (`review reasons`) and an optional note."""
    if not reason or not reason.strip():
        raise DraftflowError("a rejection needs a reason (--reason CODE; `draftflow review reasons` lists them)")
    code = check_rejection_reason(db, reason.strip().lower().replace("-", "_").replace(" ", "_"))
    note = _note(note)
    return transition(
        db,
        draft_id,
        action="reject",
        actor=_editor(editor),
        allowed_from=REVIEWABLE,
        to_status=DraftStatus.REJECTED.value,
        note=_join(code, note),
        release_claim=True,
        holder_only=holder_only,
    )


def edit(
    db: Database,
    draft_id: int,
    editor: str,
    text: str,
    note: str | None = None,
    expected_version: int | None = None,
    holder_only: bool = False,
    index: NgramIndex | None = None,
) -> Draft:
    """Save an editor's text as a new revision; the model's `original_text` is never touched.

    `expected_version` is the version the editor started from: a save over a newer version is
    refused (ConflictError), not applied. A changed text needs its approvals again. The draft's
    checks run again on the new text (with `index`, the corpus n-gram index, when there is one):
    a flag that appears or clears is recorded in the history, by "checks".
    """
    editor = _editor(editor)
    note = _note(note)
    if not text.strip():
        raise DraftflowError("the edited text is empty: to discard a draft, reject it")
    rechecked: list[Recheck] = []

    def rerun_checks(session: Session, draft: Draft) -> Decision:  # on the locked row
        prompt = session.get(Prompt, draft.prompt_id)
        result = recheck(text, prompt.text if prompt else "", draft.scores or {}, draft_flag_list(draft), index)
        rechecked.append(result)
        return Decision(None, note, {"approvals": 0, "scores": result.scores, "flags": ",".join(result.flags)[:200]})

    def save_revision(session: Session, draft: Draft) -> None:  # in the edit's own transaction
        based_on = expected_version if expected_version is not None else draft.version - 1
        session.add(
            DraftRevision(draft_id=draft_id, version=draft.version, text=text, editor=editor, based_on=based_on)
        )
        if rechecked and rechecked[-1].changed:
            session.add(
                ReviewEvent(
                    draft_id=draft_id,
                    actor=CHECKS_ACTOR,
                    action="recheck",
                    from_status=draft.status,
                    to_status=draft.status,
                    note=f"after {editor}'s edit (version {draft.version}): {rechecked[-1].note()}",
                )
            )

    return transition(
        db,
        draft_id,
        action="edit",
        actor=editor,
        allowed_from=REVIEWABLE,
        new_text=text,
        expected_version=expected_version,
        holder_only=holder_only,
        decide=rerun_checks,
        also=save_revision,
    )


def undo(db: Database, draft_id: int, editor: str, lease_minutes: int | None = None) -> tuple[Draft, int | None]:
    """Undo the editor's own last decision on a draft, within the desk's `undo_minutes`.

    The draft comes back to the editor (claimed, a fresh lease), as it was before the decision
    (an approval no longer counts); a draft they held meanwhile goes back to its queue untouched.
    Recorded as an "undo" event: nothing is deleted. Returns (draft, id of the draft given back).
    Refused when the decision is not the draft's last event (someone acted since), is another
    editor's, or is older than the window (then an admin can reopen it).
    """
    editor = _editor(editor)
    window = timedelta(minutes=desk_setting(db, "undo_minutes"))
    lease = timedelta(minutes=lease_minutes or desk_setting(db, "lease_minutes"))
    now = utcnow()
    with db.transaction() as session:
        draft = session.get(Draft, draft_id, with_for_update=True, populate_existing=True)
        if draft is None:
            raise NotFoundError(f"draft {draft_id} does not exist")
        last = session.scalar(
            select(ReviewEvent).where(ReviewEvent.draft_id == draft_id).order_by(ReviewEvent.id.desc()).limit(1)
        )
        if last is None or last.action not in ("approve", "reject") or last.actor != editor:
            raise ConflictError(f"draft {draft_id} has no decision of yours to undo (it is {draft.status})")
        if _aware(last.at) < now - window:
            raise ConflictError(
                f"your decision on draft {draft_id} is older than the {window.seconds // 60}-minute undo window: "
                "ask a desk admin to reopen it"
            )
        if draft.status != last.to_status or draft.claimed_by is not None:
            who = f"{draft.claimed_by} is reviewing it" if draft.claimed_by else f"it is {draft.status}"
            raise ConflictError(f"draft {draft_id} moved on since your decision ({who}): it cannot be undone")
        decided_as = draft.status  # read before the update below refreshes the loaded row
        given_back = give_back_held(session, editor, now)
        approvals = max(draft.approvals - 1, 0) if last.action == "approve" else draft.approvals
        session.execute(
            update(Draft)
            .where(Draft.id == draft_id)
            .values(
                status=DraftStatus.IN_REVIEW.value,
                claimed_by=editor,
                lease_expires_at=now + lease,
                claimed_at=now,
                approvals=approvals,
                version=Draft.version + 1,
                updated_at=now,
            )
        )
        session.add(
            ReviewEvent(
                draft_id=draft_id,
                actor=editor,
                action="undo",
                from_status=decided_as,
                to_status=DraftStatus.IN_REVIEW.value,
                note=f"undid {last.action} of {_naive(last.at):%H:%M:%S} UTC",
            )
        )
        return reloaded_draft(session, draft_id), given_back


def reopen(db: Database, draft_id: int, admin: str, note: str | None = None) -> Draft:
    """An admin sends a decided draft back to the pending queue (approvals reset); an event, no deletion."""
    return transition(
        db,
        draft_id,
        action="reopen",
        actor=_editor(admin),
        allowed_from=DECIDED,
        to_status=DraftStatus.PENDING.value,
        note=_note(note),
        changes={"approvals": 0},
    )


def undoable(db: Database, draft_id: int, editor: str) -> bool:
    """Whether `editor` could undo their decision on this draft now (the desk shows the button)."""
    window = timedelta(minutes=desk_setting(db, "undo_minutes"))
    with db.session() as session:
        last = session.scalar(
            select(ReviewEvent).where(ReviewEvent.draft_id == draft_id).order_by(ReviewEvent.id.desc()).limit(1)
        )
        draft = session.get(Draft, draft_id)
        return (
            last is not None
            and draft is not None
            and last.action in ("approve", "reject")
            and last.actor == editor
            and _aware(last.at) >= utcnow() - window
            and draft.status == last.to_status
            and draft.claimed_by is None
        )


def comment(db: Database, draft_id: int, editor: str, body: str) -> Comment:
    editor = _editor(editor)
    body = (body or "").strip()
    if not body:
        raise DraftflowError("the comment is empty")
    if len(body) > MAX_COMMENT:
        raise DraftflowError(f"the comment is longer than {MAX_COMMENT} characters")
    get_draft(db, draft_id)  # NotFoundError for an unknown draft
    with db.transaction() as session:
        row = Comment(draft_id=draft_id, author=editor, body=body, at=utcnow())
        session.add(row)
        session.flush()
        return row


def history(db: Database, draft_id: int) -> list[dict[str, Any]]:
    """Every event, comment and saved revision of a draft, oldest first."""
    _, _, events = get_draft(db, draft_id)
    with db.session() as session:
        comments = list(session.scalars(select(Comment).where(Comment.draft_id == draft_id)))
        revisions = list(session.scalars(select(DraftRevision).where(DraftRevision.draft_id == draft_id)))
    items: list[dict[str, Any]] = [
        {
            "at": e.at,
            "kind": "event",
            "actor": e.actor,
            "action": e.action,
            "from": e.from_status,
            "to": e.to_status,
            "note": e.note,
        }
        for e in events
    ]
    items += [
        {
            "at": c.at,
            "kind": "comment",
            "actor": c.author,
            "action": "comment",
            "from": None,
            "to": None,
            "note": c.body,
        }
        for c in comments
    ]
    items += [
        {
            "at": r.at,
            "kind": "revision",
            "actor": r.editor,
            "action": f"revision {r.version}",
            "from": None,
            "to": None,
            "note": f"based on version {r.based_on}",
            "text": r.text,
        }
        for r in revisions
    ]
    items.sort(key=lambda item: (_naive(item["at"]), item["kind"] != "event"))
    return [{**item, "at": item["at"].isoformat()} for item in items]


def revisions(db: Database, draft_id: int) -> list[dict[str, Any]]:
    """The draft's texts by version: 1 is the model's, then each saved edit."""
    draft, _, _ = get_draft(db, draft_id)
    with db.session() as session:
        rows = list(
            session.scalars(
                select(DraftRevision).where(DraftRevision.draft_id == draft_id).order_by(DraftRevision.version)
            )
        )
    return [{"version": 1, "editor": "model", "text": draft.original_text, "at": draft.created_at.isoformat()}] + [
        {"version": r.version, "editor": r.editor, "text": r.text, "at": r.at.isoformat()} for r in rows
    ]


def _last_text_change(session: Session, draft_id: int) -> datetime:
    """When the draft's text last changed (approvals count from there)."""
    last = session.scalar(
        select(DraftRevision.at)
        .where(DraftRevision.draft_id == draft_id)
        .order_by(DraftRevision.version.desc())
        .limit(1)
    )
    if last is not None:
        return last
    return session.execute(select(Draft.created_at).where(Draft.id == draft_id)).scalar_one()


def _naive(at: datetime) -> datetime:
    return at.replace(tzinfo=None)


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _note(note: str | None) -> str | None:
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise DraftflowError(f"the note is longer than {MAX_NOTE:,} characters")
    return note


def draft_flag_list(draft: Draft) -> list[str]:
    return [f for f in (draft.flags or "").split(",") if f] or [str(f) for f in (draft.scores or {}).get("flags") or []]


def _join(first: str, note: str | None) -> str:
    return first if not note else f"{first}: {note}"


def _editor(name: str) -> str:
    if not name or not name.strip():
        raise DraftflowError("an editor name is needed (--editor NAME)")
    return name.strip()


def draft_to_dict(
    draft: Draft, prompt: Prompt | None = None, events: list[ReviewEvent] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": draft.id,
        "status": draft.status,
        "run_id": draft.run_id,
        "model_version_id": draft.model_version_id,
        "prompt_id": draft.prompt_id,
        "sample_index": draft.sample_index,
        "version": draft.version,
        "seed": draft.seed,
        "category": draft.category,
        "flags": [f for f in (draft.flags or "").split(",") if f],
        "priority": draft.priority,
        "approvals": draft.approvals,
        "claimed_by": draft.claimed_by,
        "lease_expires_at": draft.lease_expires_at.isoformat() if draft.lease_expires_at else None,
        "params": draft.params,
        "scores": draft.scores,
        "original_text": draft.original_text,
        "current_text": draft.current_text,
        "edited": draft.current_text != draft.original_text,
        "created_at": draft.created_at.isoformat(),
        "updated_at": draft.updated_at.isoformat(),
    }
    if prompt is not None:
        out["prompt"] = {"id": prompt.id, "text": prompt.text, "category": prompt.category}
    if events is not None:
        out["history"] = [
            {
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "from": e.from_status,
                "to": e.to_status,
                "note": e.note,
            }
            for e in events
        ]
    return out


def show(db: Database, draft_id: int) -> dict[str, Any]:
    draft, prompt, events = get_draft(db, draft_id)
    return draft_to_dict(draft, prompt, events)


def listing(
    db: Database, status: str | None = None, run_id: str | None = None, limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    if status and status not in {s.value for s in DraftStatus}:
        raise DraftflowError(f"unknown status '{status}' (one of: {', '.join(s.value for s in DraftStatus)})")
    return [draft_to_dict(d, p) for d, p in list_drafts(db, status, run_id, limit, offset)]
