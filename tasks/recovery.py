"""Crash-only recovery: what a killed run left behind is found and finished by whoever comes next.

Called with the data home's writer lock held (so no other process of this home is writing), by
the nightly run before its stages and by `draftflow recover`:
- runs left `running` by a process that is gone are marked `crashed`;
- staging folders and partial files (a dataset, a tokenizer, a model version, a checkpoint or an
  export caught half-written) are removed: nothing reads them, and the real names were never
  replaced;
- drafts a crashed or failed run wrote but never checked (`generated`) are checked and queued.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from storage.db import Database
from storage.models import Draft, DraftStatus, Run
from storage.runs import mark_dead_runs
from storage.settings import Settings

log = logging.getLogger("draftflow.recovery")

# What the writers name their work in progress (each renames it to its real name when complete).
DEBRIS_PATTERNS = (".*.staging-*", ".staging-*", ".tokenizer-*", ".step-*.tmp", ".best.tmp", ".*.partial")
# The review maintenance flow exports approved drafts there without the home lock (it runs beside a
# night), and replaces its own leftovers on the next export.
NOT_SWEPT = ("feedback",)


@dataclass
class Recovered:
    crashed_runs: list[str] = field(default_factory=list)
    debris: list[str] = field(default_factory=list)
    drafts_queued: int = 0


def sweep_debris(home: Path) -> list[str]:
    """Remove every work-in-progress file or folder under `home` (the caller holds its lock)."""
    found = sorted(
        {
            p
            for pattern in DEBRIS_PATTERNS
            for p in Path(home).rglob(pattern)
            if p.relative_to(home).parts[0] not in NOT_SWEPT
        },
        key=lambda p: len(p.parts),
    )
    removed: list[str] = []
    for path in found:
        if any(str(path).startswith(parent + "/") for parent in removed):
            continue  # inside a folder already removed
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(str(path))
    if removed:
        log.warning("removed %d half-written files or folders left by an interrupted run: %s", len(removed), removed)
    return removed


def queue_stranded_drafts(db: Database, settings: Settings) -> int:
    """Check and queue the `generated` drafts of runs that are no longer running."""
    from tasks.review.params import CheckParams
    from tasks.review.stage import corpus_index, queue_run

    with db.session() as session:
        runs = list(
            session.scalars(
                select(Draft.run_id)
                .join(Run, Run.id == Draft.run_id)
                .where(Draft.status == DraftStatus.GENERATED.value, Run.status != "running")
                .distinct()
            )
        )
    if not runs:
        return 0
    index, queued = corpus_index(settings, None), 0
    for run_id in runs:
        result = queue_run(db, run_id, index, CheckParams())
        queued += result.queued + result.flagged
        log.warning(
            "run %s ended before queueing its drafts: %d queued, %d flagged now", run_id, result.queued, result.flagged
        )
    return queued


def recover(db: Database, settings: Settings) -> Recovered:
    return Recovered(
        crashed_runs=mark_dead_runs(db),
        debris=sweep_debris(settings.home),
        drafts_queued=queue_stranded_drafts(db, settings),
    )
