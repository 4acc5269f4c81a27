"""Sharded draft checks: a run's generated drafts split into id ranges, each checked by a separate process.

The corpus n-gram index is built once per corpus version before the shards start (it is cached on
disk beside the data home, `tasks.review.stage.corpus_index`), and each shard loads it from there. Each
draft is checked and moved exactly as `tasks.review.stage.queue_run` does it (the loop body below mirrors
it), in its own transaction, so shards never touch the same draft.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from pydantic import BaseModel, Field

from storage.db import Database, open_database
from storage.drafts import draft_ids
from storage.models import DraftStatus
from storage.refs import DatasetRef
from storage.settings import Settings
from tasks.review.params import CheckParams
from tasks.review.stage import QueueResult, corpus_index, queue_drafts, queue_result
from tasks.shards import worker_id

log = logging.getLogger("draftflow.review")


class DraftRange(BaseModel):
    """Drafts of `run_id` with ids in [first, last], checked by shard `index` of `count`."""

    index: int
    count: int
    run_id: str
    first: int
    last: int

    @property
    def label(self) -> str:
        return f"shard {self.index + 1}/{self.count} (drafts {self.first}-{self.last})"


class CheckedRange(BaseModel):
    index: int
    queued: int
    flagged: int
    flags: dict[str, int] = Field(default_factory=dict)
    seconds: float
    worker: str


def plan_ranges(db: Database, run_id: str, shards: int) -> list[DraftRange]:
    """Contiguous id ranges of near-equal draft counts over the run's `generated` drafts."""
    ids = draft_ids(db, run_id, DraftStatus.GENERATED.value)
    count = min(shards, len(ids))
    bounds = [(len(ids) * i // count, len(ids) * (i + 1) // count) for i in range(count)]
    return [
        DraftRange(index=i, count=count, run_id=run_id, first=ids[lo], last=ids[hi - 1])
        for i, (lo, hi) in enumerate(bounds)
    ]


def build_index(settings: Settings, clean: DatasetRef | None) -> bool:
    """Build (or find) the corpus n-gram index before the shards start; False when there is no corpus."""
    return corpus_index(settings, clean) is not None


def check_range(part: DraftRange, settings: Settings, clean: DatasetRef | None, params: CheckParams) -> CheckedRange:
    """Check the range's `generated` drafts: clean ones go to `pending`, risky ones to `flagged`."""
    started = time.perf_counter()
    db = open_database(settings.database_url)
    index = corpus_index(settings, clean)  # read from the on-disk cache the flow built
    ids = [i for i in draft_ids(db, part.run_id, DraftStatus.GENERATED.value) if part.first <= i <= part.last]
    queued, flagged, reasons = queue_drafts(db, ids, index, params)
    seconds = time.perf_counter() - started
    log.info("checked %s: %d queued, %d flagged (%.1f s on %s)", part.label, queued, flagged, seconds, worker_id())
    return CheckedRange(
        index=part.index, queued=queued, flagged=flagged, flags=dict(reasons), seconds=seconds, worker=worker_id()
    )


def merge_ranges(run_id: str, settings: Settings, parts: list[CheckedRange]) -> QueueResult:
    """The run's QueueResult from its shards, with the queue counted after all of them."""
    reasons: Counter[str] = Counter()
    for part in parts:
        reasons.update(part.flags)
    queued, flagged = sum(p.queued for p in parts), sum(p.flagged for p in parts)
    return queue_result(open_database(settings.database_url), run_id, queued, flagged, reasons)
