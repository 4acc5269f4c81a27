"""Drafts, prompts and review events: the review queue's reads and guarded writes.

Every status change is one transaction: a guarded `UPDATE ... WHERE status IN (allowed)
RETURNING` plus its `review_events` row. Guarding in the UPDATE itself (rather than reading the
status first) means two editors acting at once can never both win.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session

from storage.db import Database
from storage.errors import ConflictError, DraftflowError, NotFoundError, TransitionError
from storage.models import Draft, DraftStatus, Prompt, ReviewEvent, utcnow


@dataclass(frozen=True)
class PromptRow:
    key: str
    text: str
    category: str | None
    source: str
    params: dict[str, Any] = field(default_factory=dict)  # per-prompt sampling overrides (not stored)


def upsert_prompts(db: Database, prompts: Sequence[PromptRow]) -> dict[str, int]:
    """Insert prompts not seen before (by key); return key -> prompt id for all of them."""
    keys = [p.key for p in prompts]
    with db.transaction() as session:
        existing = dict(session.execute(select(Prompt.key, Prompt.id).where(Prompt.key.in_(keys))).all())
        for prompt in prompts:
            if prompt.key not in existing:
                row = Prompt(key=prompt.key, text=prompt.text, category=prompt.category, source=prompt.source)
                session.add(row)
                session.flush()
                existing[prompt.key] = row.id
        return existing


def existing_samples(db: Database, run_id: str) -> set[tuple[int, int]]:
    """(prompt id, sample index) pairs already generated for a run: what a resume skips."""
    with db.session() as session:
        rows = session.execute(select(Draft.prompt_id, Draft.sample_index).where(Draft.run_id == run_id))
        return {(p, s) for p, s in rows}


def insert_drafts(db: Database, rows: Iterable[dict[str, Any]]) -> int:
    """Insert drafts, silently skipping any (run, prompt, sample) that already exists."""
    rows = list(rows)
    if not rows:
        return 0
    with db.transaction() as session:
        # RETURNING lists only the rows inserted: rowcount is -1 for a multi-row insert on SQLite,
        # and a resumed run must report the drafts it really added.
        return len(session.execute(_insert_ignoring_duplicates(session, rows).returning(Draft.id)).all())


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> Any:
    dialect = session.get_bind().dialect.name
    now = utcnow()
    values = [
        {"created_at": now, "updated_at": now, "version": 1, "scores": {}, "status": DraftStatus.GENERATED.value, **row}
        for row in rows
    ]
    keys = ["run_id", "prompt_id", "sample_index"]
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(Draft).values(values).on_conflict_do_nothing(index_elements=keys)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(Draft).values(values).on_conflict_do_nothing(index_elements=keys)
    return insert(Draft).values(values)  # other backends: the unique constraint still guards


@dataclass(frozen=True)
class Decision:
    """What a review action does, decided from the locked row (see `transition`)."""

    to_status: str | None
    note: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)


def transition(
    db: Database,
    draft_id: int,
    *,
    action: str,
    actor: str,
    allowed_from: Sequence[str],
    to_status: str | None = None,
    note: str | None = None,
    new_text: str | None = None,
    expected_version: int | None = None,
    scores: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
    release_claim: bool = False,
    holder_only: bool = False,
    decide: Callable[[Session, Draft], Decision] | None = None,
    also: Callable[[Session, Draft], None] | None = None,
) -> Draft:
    """Apply one review action atomically and record its event.

    `decide(session, draft)` runs inside the transaction, with the row locked, and returns what the
    action does from the draft as it is now (an approval counts the approvals already there); it may
    refuse by raising. `also(session, draft)` adds rows that belong to the same change (an edit's
    revision) in the same transaction.

    `to_status=None` keeps the status (an edit). A draft another editor holds with a live lease
    is refused to everyone else. `holder_only` (the desk) refuses it to anyone but the holder of
    a live lease: a lease that ran out is lost. `release_claim` clears the lease (a decision). Raises
    NotFoundError for an unknown draft, TransitionError when the draft's status does not allow
    the action, ConflictError when `expected_version` is stale or another editor holds the draft.
    """
    now = utcnow()
    with db.transaction() as session:
        guard = [
            Draft.id == draft_id,
            Draft.status.in_(list(allowed_from)),
            or_(Draft.status != DraftStatus.IN_REVIEW.value, Draft.claimed_by == actor, Draft.lease_expires_at <= now),
        ]
        if holder_only:
            guard += [
                Draft.status == DraftStatus.IN_REVIEW.value,
                Draft.claimed_by == actor,
                Draft.lease_expires_at > now,
            ]
        if expected_version is not None:
            guard.append(Draft.version == expected_version)
        values: dict[str, Any] = {"version": Draft.version + 1, "updated_at": now, **(changes or {})}
        if to_status is not None:
            values["status"] = to_status
        if new_text is not None:
            values["current_text"] = new_text
        if scores is not None:
            values["scores"] = scores
        if release_claim:
            values.update(claimed_by=None, lease_expires_at=None)
        # FOR UPDATE (PostgreSQL) pins the row so the event's from_status is the one we changed;
        # SQLite ignores it and is already serialised by BEGIN IMMEDIATE.
        locked = session.execute(
            select(Draft.status, Draft.claimed_by, Draft.claimed_at).where(Draft.id == draft_id).with_for_update()
        ).first()
        before = locked.status if locked is not None else None
        claimed_at = locked.claimed_at if locked is not None and locked.claimed_by == actor else None
        if decide is not None and before is not None:
            current = session.get(Draft, draft_id, populate_existing=True)
            assert current is not None
            decision = decide(session, current)
            to_status, note = decision.to_status, decision.note
            values.update(decision.changes)
            if to_status is not None:
                values["status"] = to_status
        statement = update(Draft).where(*guard).values(**values).returning(Draft.id)
        # the row is reloaded below: no in-Python evaluation of the guard against a loaded object
        updated = session.execute(statement.execution_options(synchronize_session=False)).scalar()
        if updated is None:
            _explain_refusal(session, draft_id, action, allowed_from, expected_version, actor, holder_only)
        session.add(
            ReviewEvent(
                draft_id=draft_id,
                actor=actor,
                action=action,
                from_status=before,
                to_status=to_status or before,
                note=note,
                claimed_at=claimed_at if release_claim else None,
            )
        )
        draft = reloaded_draft(session, draft_id)
        if also is not None:
            also(session, draft)
        return draft


def _explain_refusal(
    session: Session,
    draft_id: int,
    action: str,
    allowed_from: Sequence[str],
    expected_version: int | None,
    actor: str,
    holder_only: bool = False,
) -> None:
    draft = session.get(Draft, draft_id)
    if draft is None:
        raise NotFoundError(f"draft {draft_id} does not exist (list drafts with `draftflow review list`)")
    if draft.status not in allowed_from:
        allowed = ", ".join(allowed_from[:-1]) + (" or " if len(allowed_from) > 1 else "") + allowed_from[-1]
        raise TransitionError(
            f"cannot {action} draft {draft_id}: it is {draft.status}; only {allowed} drafts can be {_past(action)}"
        )
    if holder_only and (draft.status != DraftStatus.IN_REVIEW.value or draft.claimed_by != actor):
        holder = f"{draft.claimed_by} is reviewing it" if draft.claimed_by else f"it is {draft.status}"
        raise ConflictError(f"you do not hold draft {draft_id} ({holder}): take it with “Review this draft”")
    lease = draft.lease_expires_at
    if holder_only and lease is not None and (lease if lease.tzinfo else lease.replace(tzinfo=UTC)) <= utcnow():
        raise ConflictError(
            f"your lease on draft {draft_id} ran out at {draft.lease_expires_at:%H:%M:%S} UTC: "
            "take it back with “Review this draft” (your text is kept)"
        )
    if draft.status == DraftStatus.IN_REVIEW.value and draft.claimed_by != actor:
        raise ConflictError(
            f"cannot {action} draft {draft_id}: {draft.claimed_by} is reviewing it "
            f"(lease until {draft.lease_expires_at:%H:%M:%S} UTC)"
        )
    raise ConflictError(
        f"draft {draft_id} changed since version {expected_version} "
        f"(now version {draft.version}): reload it and apply your change again"
    )


def _past(action: str) -> str:
    return {"approve": "approved", "reject": "rejected", "edit": "edited", "queue": "queued"}.get(action, action + "ed")


def reloaded_draft(session: Session, draft_id: int) -> Draft:
    """The draft as the database has it now (a row this transaction just wrote exists)."""
    draft = session.get(Draft, draft_id, populate_existing=True)
    if draft is None:
        raise NotFoundError(f"draft {draft_id} does not exist")
    return draft


def get_draft(db: Database, draft_id: int) -> tuple[Draft, Prompt, list[ReviewEvent]]:
    with db.session() as session:
        draft = session.get(Draft, draft_id)
        if draft is None:
            raise NotFoundError(f"draft {draft_id} does not exist (list drafts with `draftflow review list`)")
        prompt = session.get_one(Prompt, draft.prompt_id)  # a foreign key: every draft has its prompt
        events = list(
            session.scalars(select(ReviewEvent).where(ReviewEvent.draft_id == draft_id).order_by(ReviewEvent.id))
        )
        return draft, prompt, events


def batch_members(db: Database, run_id: str, batch_id: str) -> list[tuple[Draft, Prompt]]:
    """The drafts generated together in one batch, in their order in it."""
    with db.session() as session:
        rows = session.execute(
            select(Draft, Prompt)
            .join(Prompt, Prompt.id == Draft.prompt_id)
            .where(Draft.run_id == run_id, Draft.params["batch"]["id"].as_string() == batch_id)
        ).all()
        return sorted(((d, p) for d, p in rows), key=lambda pair: pair[0].params["batch"]["position"])


def list_drafts(
    db: Database, status: str | None = None, run_id: str | None = None, limit: int = 50, offset: int = 0
) -> list[tuple[Draft, Prompt]]:
    """Drafts oldest first (queue order), optionally one status and one run; keyset-friendly."""
    with db.session() as session:
        query = select(Draft, Prompt).join(Prompt, Prompt.id == Draft.prompt_id)
        if status:
            query = query.where(Draft.status == status)
        if run_id:
            query = query.where(Draft.run_id == run_id)
        query = query.order_by(Draft.created_at, Draft.id).limit(limit).offset(offset)
        return [(d, p) for d, p in session.execute(query).all()]


def draft_ids(db: Database, run_id: str, status: str) -> list[int]:
    with db.session() as session:
        return list(
            session.scalars(select(Draft.id).where(Draft.run_id == run_id, Draft.status == status).order_by(Draft.id))
        )


def status_counts(db: Database, run_id: str | None = None) -> dict[str, int]:
    with db.session() as session:
        query = select(Draft.status, func.count()).group_by(Draft.status)
        if run_id:
            query = query.where(Draft.run_id == run_id)
        return {status: n for status, n in session.execute(query).all()}


@dataclass
class DraftFilter:
    """What the queue screen and `review list` filter on; every value is bound, never formatted into SQL."""

    status: str | None = None
    category: str | None = None
    flag: str | None = None  # one check flag, e.g. "copied"
    model_version_id: int | None = None
    run_id: str | None = None  # the night
    editor: str | None = None  # claimed by
    search: str | None = None  # a substring of the prompt or the draft


def query_drafts(
    db: Database, where: DraftFilter, after: tuple[str, int] | None = None, limit: int = 50
) -> tuple[list[tuple[Draft, Prompt]], tuple[str, int] | None]:
    """One page of drafts in queue order (oldest first) and the cursor of the next page.

    Keyset paging on (created_at, id) with the (status, created_at) index: a page costs the same
    at page 1 and page 20,000, where OFFSET would scan every row before it.
    """
    query = select(Draft, Prompt).join(Prompt, Prompt.id == Draft.prompt_id)
    if where.status:
        query = query.where(Draft.status == where.status)
    if where.category:
        query = query.where(Draft.category == where.category)
    if where.flag:
        query = query.where(Draft.flags.contains(where.flag, autoescape=True))
    if where.model_version_id is not None:
        query = query.where(Draft.model_version_id == where.model_version_id)
    if where.run_id:
        query = query.where(Draft.run_id == where.run_id)
    if where.editor:
        query = query.where(Draft.claimed_by == where.editor)
    if where.search:
        query = query.where(
            or_(
                Draft.current_text.contains(where.search, autoescape=True),
                Prompt.text.contains(where.search, autoescape=True),
            )
        )
    if after is not None:
        created, last_id = after  # a row-value comparison: one index range scan on both backends
        query = query.where(tuple_(Draft.created_at, Draft.id) > tuple_(_parse_cursor_time(created), last_id))
    with db.session() as session:
        rows = [(d, p) for d, p in session.execute(query.order_by(Draft.created_at, Draft.id).limit(limit + 1)).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = (rows[-1][0].created_at.isoformat(), rows[-1][0].id) if more and rows else None
    return rows, cursor


def _parse_cursor_time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise DraftflowError(f"bad page cursor {value!r}") from exc


def categories(db: Database) -> list[str]:
    with db.session() as session:
        return [c for c in session.scalars(select(Prompt.category).distinct().order_by(Prompt.category)) if c]
