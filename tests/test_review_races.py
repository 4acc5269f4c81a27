"""Review under concurrency, on SQLite and PostgreSQL: approvals counted once each, a flagged draft kept
in its queue, an edit and its revision as one change, one claim per editor, and migrations that do
not race when several processes open a fresh database."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storage.accounts import set_desk_settings
from storage.db import Database
from storage.models import Draft, DraftRevision, ReviewEvent
from tasks.review import actions as editor
from testkit.queue_seed import seed_drafts


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; results (or the exceptions raised) in order."""
    start, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # the test inspects what each call ended with
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_approvals_each_count_once(any_db: Database) -> None:
    set_desk_settings(any_db, {"required_reviews": 3})
    drafts = seed_drafts(any_db, 6)
    for draft_id in drafts:
        _at_once([lambda d=draft_id, n=name: editor.approve(any_db, d, n) for name in ("ann", "bob", "cy")])
    with any_db.session() as s:
        rows = {d.id: d for d in s.scalars(sa.select(Draft).where(Draft.id.in_(drafts)))}
        events = s.execute(sa.select(ReviewEvent.draft_id, ReviewEvent.actor).where(ReviewEvent.action == "approve"))
        approvers: dict[int, set[str]] = {}
        for draft_id, actor in events:
            approvers.setdefault(draft_id, set()).add(actor)
    for draft_id in drafts:  # approvals = distinct approvers = 3, always
        assert rows[draft_id].approvals == len(approvers[draft_id]) == 3, draft_id
        assert rows[draft_id].status == "approved"


def test_the_same_editor_approving_twice_at_once_counts_once(any_db: Database) -> None:
    set_desk_settings(any_db, {"required_reviews": 2})
    (draft_id,) = seed_drafts(any_db, 1)
    results = _at_once([lambda: editor.approve(any_db, draft_id, "ann") for _ in range(3)])
    assert sum(not isinstance(r, Exception) for r in results) == 1
    with any_db.session() as s:
        assert s.get(Draft, draft_id).approvals == 1  # type: ignore[union-attr]


def test_a_flagged_draft_stays_flagged_until_its_reviews_are_done(any_db: Database) -> None:
    set_desk_settings(any_db, {"required_reviews": 2})
    (draft_id,) = seed_drafts(any_db, 1)
    with any_db.transaction() as s:
        s.execute(sa.update(Draft).where(Draft.id == draft_id).values(status="flagged", flags="pii"))
    claimed = editor.claim(any_db, "ann", queue="flagged")
    assert claimed is not None and claimed.id == draft_id
    assert editor.approve(any_db, draft_id, "ann").status == "flagged"  # back to the flagged queue
    assert editor.approve(any_db, draft_id, "bob").status == "approved"  # unclaimed, straight from flagged


def test_an_edit_and_its_revision_are_one_change(any_db: Database) -> None:
    (draft_id,) = seed_drafts(any_db, 1)
    with any_db.session() as s:
        before = s.get(Draft, draft_id)
        assert before is not None
        text, version = before.current_text, before.version
    with any_db.transaction() as s:  # the revision the edit would write exists already: it must fail whole
        s.add(DraftRevision(draft_id=draft_id, version=version + 1, text="x", editor="zed", based_on=version))
    with pytest.raises(sa.exc.IntegrityError):
        editor.edit(any_db, draft_id, "ann", "A new text.")
    with any_db.session() as s:
        after = s.get(Draft, draft_id)
        assert after is not None and (after.current_text, after.version) == (text, version)
        assert not s.scalar(sa.select(ReviewEvent.id).where(ReviewEvent.action == "edit"))


def test_one_editor_claiming_from_two_tabs_at_once_holds_one_draft(any_db: Database) -> None:
    seed_drafts(any_db, 6)
    results = _at_once([lambda: editor.claim(any_db, "ann") for _ in range(4)])
    assert not [r for r in results if isinstance(r, Exception)]
    assert len({r.id for r in results}) == 1  # every tab got the same draft
    with any_db.session() as s:
        held = s.scalars(sa.select(Draft.id).where(Draft.claimed_by == "ann", Draft.status == "in_review")).all()
    assert len(held) == 1


def _open_in_processes(url: str, n: int = 4) -> list[subprocess.CompletedProcess[str]]:
    code = "import sys; from storage.db import Database; Database(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate()) for p in procs]


def _revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(sa.text("select version_num from alembic_version")).scalar()
    engine.dispose()
    return found


@pytest.mark.slow
def test_processes_opening_a_fresh_sqlite_database_at_once_migrate_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for done in _open_in_processes(url):
        assert done.returncode == 0, done.stderr[-2000:]
    assert _revision(url) == "0007"


@pytest.mark.slow
def test_processes_opening_a_fresh_postgres_database_at_once_migrate_it_once(postgres_url: str) -> None:
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("CREATE DATABASE fresh_migrations"))
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/fresh_migrations"
    for done in _open_in_processes(url):
        assert done.returncode == 0, done.stderr[-2000:]
    assert _revision(url) == "0007"
