"""Queue for review: check each generated draft of a run and move it into the editors' queue."""

from __future__ import annotations

import logging
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from storage.db import Database
from storage.drafts import draft_ids, get_draft, status_counts, transition
from storage.models import DraftStatus
from storage.settings import Settings

log = logging.getLogger("draftflow.review")
SYSTEM_ACTOR = "draftflow"


class QueueResult(BaseModel):
    run_id: str
    queued: int
    queue: dict[str, int]


def draft_checks(text: str) -> dict[str, Any]:
    """Checks shown to editors (deepened in later issues: originality, repetition, PII)."""
    words = text.split()
    return {"n_words": len(words), "n_chars": len(text),
            "distinct_word_ratio": round(len(set(words)) / len(words), 3) if words else 0.0}


def queue_run(db: Database, run_id: str) -> QueueResult:
    """Check each `generated` draft of a run and move it to `pending` (the review queue)."""
    queued = 0
    for draft_id in draft_ids(db, run_id, DraftStatus.GENERATED.value):
        draft, _, _ = get_draft(db, draft_id)
        transition(db, draft_id, action="queue", actor=SYSTEM_ACTOR,
                   allowed_from=[DraftStatus.GENERATED.value], to_status=DraftStatus.PENDING.value,
                   scores={**draft.scores, **draft_checks(draft.original_text)})
        queued += 1
    counts = status_counts(db)
    log.info("queued %d drafts of run %s; queue now %s", queued, run_id, counts)
    return QueueResult(run_id=run_id, queued=queued, queue=counts)


@task(name="queue_for_review", cache_policy=NO_CACHE)
def queue_for_review(run_id: str, settings: Settings) -> QueueResult:
    """Prefect task: this run's generated drafts enter the editors' queue."""
    from storage.db import open_database

    return queue_run(open_database(settings.database_url), run_id)
