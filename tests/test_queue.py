"""The review queue's semantics on SQLite and on a real PostgreSQL server: claims, leases, sweeps,
stale saves, every transition, required reviews, and many editors at once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from storage.accounts import set_desk_settings
from storage.db import Database
from storage.errors import ConflictError, DraftflowError, TransitionError
from storage.models import Draft, DraftRevision, DraftStatus, ReviewEvent, utcnow
from storage.queue import SWEEP_GRACE, heartbeat, release, sweep_expired
from storage.queue import claim as claim_with
from tasks.review import actions as editor
from testkit.queue_seed import seed_drafts


def status_of(db: Database, draft_id: int) -> str:
    with db.session() as s:
        return s.get(Draft, draft_id).status


def actions(db: Database, draft_id: int) -> list[tuple[str, str, str | None, str]]:
    with db.session() as s:
        return [
            (e.actor, e.action, e.from_status, e.to_status)
            for e in s.scalars(sa.select(ReviewEvent).where(ReviewEvent.draft_id == draft_id).order_by(ReviewEvent.id))
        ]


def claimed_from(db: Database, draft_id: int) -> str | None:
    with db.session() as s:
        return s.scalar(sa.select(Draft.claimed_from).where(Draft.id == draft_id))


def expire(db: Database, draft_id: int, ago: timedelta = SWEEP_GRACE + timedelta(seconds=1)) -> None:
    """The lease ran out `ago` (by default: past the sweep's grace)."""
    with db.transaction() as s:
        s.execute(sa.update(Draft).where(Draft.id == draft_id).values(lease_expires_at=utcnow() - ago))


def test_claim_takes_priority_then_age_within_a_category(any_db: Database) -> None:
    ids = seed_drafts(any_db, 9)
    with any_db.transaction() as s:
        s.execute(sa.update(Draft).where(Draft.id == ids[5]).values(priority=5))
    assert editor.claim(any_db, "ann").id == ids[5]  # priority first
    assert editor.claim(any_db, "bob").id == ids[0]  # then the oldest
    assert editor.claim(any_db, "ann").id == ids[5]  # a live claim comes back, no second draft
    news = editor.claim(any_db, "cat", category="news")
    assert news.category == "news" and news.id not in (ids[0], ids[5])
    assert editor.claim(any_db, "dan", category="no such category") is None
    assert actions(any_db, ids[5]) == []  # taking a draft writes no history row; the draft keeps where from
    assert [status_of(any_db, ids[5]), claimed_from(any_db, ids[5])] == ["in_review", "pending"]
    release(any_db, ids[0], "bob")
    assert editor.claim(any_db, "bob", skipped=[ids[0]]).id == ids[1]  # a skipped draft is passed over


def test_leases_expire_and_the_sweep_returns_drafts_to_their_queue(any_db: Database) -> None:
    (first, second) = seed_drafts(any_db, 2)
    assert editor.claim(any_db, "ann").id == first
    with pytest.raises(ConflictError, match="ann is reviewing it"):
        editor.approve(any_db, first, "bob")  # held by ann: nobody else decides it
    with pytest.raises(ConflictError, match="claimed by ann"):
        heartbeat(any_db, first, "bob")
    renewed = heartbeat(any_db, first, "ann", lease_minutes=30)
    assert renewed > utcnow() + timedelta(minutes=29)
    assert sweep_expired(any_db) == 0  # a live lease stays
    expire(any_db, first)
    assert sweep_expired(any_db) == 1
    assert status_of(any_db, first) == "pending"
    assert actions(any_db, first)[-1] == ("system", "lease_expired", "in_review", "pending")
    assert editor.claim(any_db, "bob").id == first  # back in the queue, oldest first
    with pytest.raises(ConflictError, match="not claimed"):
        heartbeat(any_db, second, "ann")


def test_an_expired_lease_does_not_block_another_editor(any_db: Database) -> None:
    (only,) = seed_drafts(any_db, 1)
    editor.claim(any_db, "ann")
    expire(any_db, only)
    assert editor.approve(any_db, only, "bob").status == "approved"  # ann's lease had run out
    with pytest.raises(TransitionError):
        editor.approve(any_db, only, "ann")  # decided already


def test_release_returns_a_flagged_draft_to_the_flagged_queue(any_db: Database) -> None:
    (normal, risky) = seed_drafts(any_db, 2)
    with any_db.transaction() as s:
        s.execute(sa.update(Draft).where(Draft.id == risky).values(status="flagged", flags="copied"))
    assert editor.claim(any_db, "ann", queue="flagged").id == risky
    assert release(any_db, risky, "ann").status == "flagged"
    assert editor.claim(any_db, "ann").id == normal
    with pytest.raises(DraftflowError, match="cannot claim from"):
        claim_with(any_db, "ann", queue="approved")


def test_a_stale_save_is_refused_and_every_revision_is_kept(any_db: Database) -> None:
    (draft_id,) = seed_drafts(any_db, 1)
    editor.claim(any_db, "ann")
    first = editor.edit(any_db, draft_id, "ann", "Ann's better text.", expected_version=1)
    assert first.version == 2
    with pytest.raises(ConflictError, match="changed since version 1"):
        editor.edit(any_db, draft_id, "ann", "An edit made on the old copy.", expected_version=1)
    editor.edit(any_db, draft_id, "ann", "Ann's best text.", expected_version=2)
    texts = editor.revisions(any_db, draft_id)
    assert [(r["version"], r["editor"]) for r in texts] == [(1, "model"), (2, "ann"), (3, "ann")]
    assert texts[0]["text"].startswith("Draft 0") and texts[-1]["text"] == "Ann's best text."
    with any_db.session() as s:
        d = s.get(Draft, draft_id)
        assert d.original_text.startswith("Draft 0") and d.current_text == "Ann's best text."
        assert s.scalar(sa.select(sa.func.count()).select_from(DraftRevision)) == 2


ACTIONS = {
    "approve": lambda db, i: editor.approve(db, i, "ann"),
    "reject": lambda db, i: editor.reject(db, i, "ann", "off_topic"),
    "edit": lambda db, i: editor.edit(db, i, "ann", "New text."),
}
ALLOWED = {"pending", "flagged", "in_review"}


@pytest.mark.parametrize("status", [s.value for s in DraftStatus])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_transition_is_allowed_or_refused(db: Database, status: str, action: str) -> None:
    (draft_id,) = seed_drafts(db, 1, status=status)
    if status == "in_review":
        with db.transaction() as s:
            s.execute(
                sa.update(Draft)
                .where(Draft.id == draft_id)
                .values(claimed_by="ann", lease_expires_at=utcnow() + timedelta(minutes=5))
            )
    if status in ALLOWED:
        after = ACTIONS[action](db, draft_id)
        assert after.status == {"approve": "approved", "reject": "rejected", "edit": status}[action]
        events = [a[:3] for a in actions(db, draft_id) if a[0] != "checks"]  # an edit re-runs the checks
        assert events[-1] == ("ann", action, status)
    else:
        with pytest.raises(TransitionError, match=f"it is {status}"):
            ACTIONS[action](db, draft_id)
        assert status_of(db, draft_id) == status and actions(db, draft_id) == []


def test_claims_only_come_from_the_queues(db: Database) -> None:
    for status in ("generated", "approved", "rejected", "in_review"):
        seed_drafts(db, 1, status=status, run_id=f"run-{status}")
    assert editor.claim(db, "ann") is None


def test_required_reviews_need_different_editors_and_an_edit_resets_them(db: Database) -> None:
    set_desk_settings(db, {"required_reviews": 2})
    (draft_id,) = seed_drafts(db, 1)
    assert editor.claim(db, "ann").id == draft_id
    once = editor.approve(db, draft_id, "ann")
    assert (once.status, once.approvals, once.claimed_by) == ("pending", 1, None)
    assert editor.claim(db, "ann") is None  # ann approved it already: she is not handed it again
    with pytest.raises(ConflictError, match="another editor"):
        editor.approve(db, draft_id, "ann")
    assert editor.claim(db, "bob").id == draft_id
    editor.edit(db, draft_id, "bob", "Bob changed it.")  # a changed text needs its approvals again
    assert editor.approve(db, draft_id, "bob").approvals == 1
    assert editor.approve(db, draft_id, "ann").status == "approved"


def test_reject_needs_a_known_reason(db: Database) -> None:
    (draft_id,) = seed_drafts(db, 1)
    with pytest.raises(DraftflowError, match="needs a reason"):
        editor.reject(db, draft_id, "ann", " ")
    with pytest.raises(DraftflowError, match="unknown rejection reason 'nonsense'"):
        editor.reject(db, draft_id, "ann", "nonsense")
    assert editor.reject(db, draft_id, "ann", "Factual-Error", note="wrong year").status == "rejected"
    assert actions(db, draft_id)[-1] == ("ann", "reject", "pending", "rejected")


def test_comments_and_history(db: Database) -> None:
    (draft_id,) = seed_drafts(db, 1)
    editor.claim(db, "ann")
    editor.comment(db, draft_id, "ann", "Check the second sentence.")
    editor.edit(db, draft_id, "ann", "Fixed the draft as asked.", expected_version=1)
    editor.approve(db, draft_id, "ann")
    kinds = [(h["kind"], h["action"]) for h in editor.history(db, draft_id)]
    assert kinds == [
        ("comment", "comment"),
        ("event", "edit"),
        ("revision", "revision 2"),
        ("event", "approve"),
    ]
    with pytest.raises(DraftflowError, match="empty"):
        editor.comment(db, draft_id, "ann", "  ")


def _work_the_queue(db: Database, name: str, claimed: list[int], errors: list[BaseException]) -> None:
    try:
        while (draft := editor.claim(db, name)) is not None:
            claimed.append(draft.id)
            if draft.id % 2:
                editor.reject(db, draft.id, name, "low_quality")
            else:
                editor.approve(db, draft.id, name)
    except BaseException as exc:  # reported by the test, not lost in a thread
        errors.append(exc)


@pytest.mark.slow
def test_sixteen_editors_at_once_never_share_a_draft(any_db: Database) -> None:
    ids = seed_drafts(any_db, 2000)
    claimed: dict[str, list[int]] = {f"editor{i}": [] for i in range(16)}
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_work_the_queue, args=(any_db, name, got, errors)) for name, got in claimed.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors[:3]
    handed = Counter(i for got in claimed.values() for i in got)
    assert sorted(handed) == ids and set(handed.values()) == {1}  # every draft once, none twice
    assert sum(1 for got in claimed.values() if got) > 1  # the editors really worked in parallel
    with any_db.session() as s:
        states = dict(s.execute(sa.select(Draft.status, sa.func.count()).group_by(Draft.status)).all())
        events = Counter(a for (a,) in s.execute(sa.select(ReviewEvent.action)).all())
    assert states == {"approved": 1000, "rejected": 1000}  # no lost decision
    assert events == {"approve": 1000, "reject": 1000}
