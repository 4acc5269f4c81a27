"""Editors' actions on drafts: approve, reject, edit, list, show.

Kept free of Prefect and torch imports so the review CLI starts fast. Each action is one guarded
transaction plus its `review_events` row (storage.drafts.transition).
"""

from __future__ import annotations

from typing import Any

from storage.db import Database
from storage.drafts import get_draft, list_drafts, transition
from storage.errors import DraftflowError
from storage.models import Draft, DraftStatus, Prompt, ReviewEvent

REVIEWABLE = (DraftStatus.PENDING.value, DraftStatus.IN_REVIEW.value, DraftStatus.FLAGGED.value)


def approve(db: Database, draft_id: int, editor: str, note: str | None = None) -> Draft:
    return transition(db, draft_id, action="approve", actor=_editor(editor), allowed_from=REVIEWABLE,
                      to_status=DraftStatus.APPROVED.value, note=note)


def reject(db: Database, draft_id: int, editor: str, reason: str, note: str | None = None) -> Draft:
    if not reason or not reason.strip():
        raise DraftflowError("a rejection needs a reason (--reason TEXT)")
    full = reason.strip() if not note else f"{reason.strip()}: {note}"
    return transition(db, draft_id, action="reject", actor=_editor(editor), allowed_from=REVIEWABLE,
                      to_status=DraftStatus.REJECTED.value, note=full)


def edit(db: Database, draft_id: int, editor: str, text: str, note: str | None = None,
         expected_version: int | None = None) -> Draft:
    """Save an editor's text; the model's `original_text` is never touched."""
    if not text.strip():
        raise DraftflowError("the edited text is empty: to discard a draft, reject it")
    return transition(db, draft_id, action="edit", actor=_editor(editor), allowed_from=REVIEWABLE,
                      new_text=text, note=note, expected_version=expected_version)


def _editor(name: str) -> str:
    if not name or not name.strip():
        raise DraftflowError("an editor name is needed (--editor NAME)")
    return name.strip()


def draft_to_dict(draft: Draft, prompt: Prompt | None = None,
                  events: list[ReviewEvent] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": draft.id, "status": draft.status, "run_id": draft.run_id,
        "model_version_id": draft.model_version_id, "prompt_id": draft.prompt_id,
        "sample_index": draft.sample_index, "version": draft.version, "seed": draft.seed,
        "params": draft.params, "scores": draft.scores, "original_text": draft.original_text,
        "current_text": draft.current_text, "edited": draft.current_text != draft.original_text,
        "created_at": draft.created_at.isoformat(), "updated_at": draft.updated_at.isoformat(),
    }
    if prompt is not None:
        out["prompt"] = {"id": prompt.id, "text": prompt.text, "category": prompt.category}
    if events is not None:
        out["history"] = [{"at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                           "from": e.from_status, "to": e.to_status, "note": e.note} for e in events]
    return out


def show(db: Database, draft_id: int) -> dict[str, Any]:
    draft, prompt, events = get_draft(db, draft_id)
    return draft_to_dict(draft, prompt, events)


def listing(db: Database, status: str | None = None, run_id: str | None = None,
            limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    if status and status not in {s.value for s in DraftStatus}:
        raise DraftflowError(f"unknown status '{status}' (one of: {', '.join(s.value for s in DraftStatus)})")
    return [draft_to_dict(d, p) for d, p in list_drafts(db, status, run_id, limit, offset)]
