"""Queue for review: check each generated draft of a run and move it into the editors' queue."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, Field

from storage.db import Database
from storage.drafts import draft_ids, get_draft, status_counts, transition
from storage.models import DraftStatus
from storage.parquet_store import read_manifest
from storage.refs import DatasetRef
from storage.settings import Settings
from tasks.review.checks import NgramIndex, check_draft
from tasks.review.params import CheckParams
from tasks.review.sources import SourcesIndex, is_built, ngram_cache_root, sources_cache_root

log = logging.getLogger("draftflow.review")
SYSTEM_ACTOR = "draftflow"


class QueueResult(BaseModel):
    run_id: str
    queued: int
    flagged: int = 0
    flags: dict[str, int] = Field(default_factory=dict)
    queue: dict[str, int]


def queue_run(
    db: Database, run_id: str, index: NgramIndex | None = None, params: CheckParams | None = None
) -> QueueResult:
    """Check each `generated` draft of a run; clean ones go to `pending`, risky ones to `flagged`."""
    ids = draft_ids(db, run_id, DraftStatus.GENERATED.value)
    queued, flagged, reasons = queue_drafts(db, ids, index, params or CheckParams())
    return queue_result(db, run_id, queued, flagged, reasons)


def queue_drafts(
    db: Database, ids: Iterable[int], index: NgramIndex | None, params: CheckParams
) -> tuple[int, int, Counter[str]]:
    """Check and route each draft (`queue_draft`); (queued, flagged, flags by kind). The sharded checks
    call this with their id range."""
    queued = flagged = 0
    reasons: Counter[str] = Counter()
    for draft_id in ids:
        flags = queue_draft(db, draft_id, index, params)
        queued += 1
        flagged += bool(flags)
        reasons.update(flag.split(":")[0] for flag in flags)
    return queued, flagged, reasons


def queue_result(db: Database, run_id: str, queued: int, flagged: int, reasons: Counter[str]) -> QueueResult:
    """The run's result with the queue as it is now, logged."""
    counts = status_counts(db)
    log.info(
        "queued %d drafts of run %s (%d flagged: %s); queue now %s",
        queued,
        run_id,
        flagged,
        dict(reasons) or "-",
        counts,
    )
    return QueueResult(run_id=run_id, queued=queued, flagged=flagged, flags=dict(reasons), queue=counts)


def queue_draft(db: Database, draft_id: int, index: NgramIndex | None, params: CheckParams) -> list[str]:
    """Check one generated draft, store its scores and route it: pending, or flagged with the reasons
    in the event note. Returns the flags. (The sharded checks call this too.)"""
    draft, prompt, _ = get_draft(db, draft_id)
    scores, flags = check_draft(draft.original_text, index, params, prompt=prompt.text)
    target = DraftStatus.FLAGGED if flags else DraftStatus.PENDING
    transition(
        db,
        draft_id,
        action="queue",
        actor=SYSTEM_ACTOR,
        allowed_from=[DraftStatus.GENERATED.value],
        to_status=target.value,
        note=", ".join(flags) or None,
        # the thresholds go with the scores: the desk shows them and judges an edit by the same ones
        scores={**draft.scores, **scores, "flags": flags, "thresholds": params.model_dump(mode="json")},
        changes={"flags": ",".join(flags)[:200]},
    )
    return flags


def corpus_index(settings: Settings, clean: DatasetRef | None) -> NgramIndex | None:
    """The originality index of the corpus the model was trained on (None before any clean run).

    The same corpus version's sources index (the desk's fact-checking passages) is built here too, so
    each corpus version gets both once, before its drafts reach the desk; later calls (each shard of
    the sharded checks) only see that it is there.
    """
    if clean is None:
        manifest = read_manifest(settings.clean_dir)
        if manifest is None:
            log.warning("no clean corpus: drafts are queued without the originality check")
            return None
        clean = DatasetRef(path=str(settings.clean_dir), fingerprint=manifest["fingerprint"], rows=manifest["rows"])
    index = NgramIndex.load_or_build(Path(clean.path), clean.fingerprint, ngram_cache_root(settings))
    if not is_built(sources_cache_root(settings), clean.fingerprint):
        started = time.perf_counter()
        sources = SourcesIndex.load_or_build(clean.path, clean.fingerprint, sources_cache_root(settings))
        log.info(
            "built the sources index of corpus %s: %d passages in %.1f s",
            clean.fingerprint[:12],
            sources.passages.num_rows,
            time.perf_counter() - started,
        )
    return index


def return_expired_leases(db: Database) -> int:
    """Drafts whose editor's lease expired go back to their queue; returns how many."""
    from storage.queue import sweep_expired

    swept = sweep_expired(db)
    if swept:
        log.info("returned %d drafts with expired leases to the queue", swept)
    return swept
