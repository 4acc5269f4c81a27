"""The `runs` table: one row per flow run or stage command, with its parameters and summary."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from storage.db import Database
from storage.errors import first_line
from storage.models import Run, utcnow
from storage.processes import describe, is_alive, this_process

log = logging.getLogger("draftflow.runs")


def start_run(
    db: Database, run_id: str, kind: str, params: dict[str, Any], prefect_flow_run_id: str | None = None
) -> None:
    """Record a run as started; starting an existing run id again (a resume) marks it running."""
    with db.transaction() as session:
        run = session.get(Run, run_id)
        owner = this_process()
        if run is None:
            session.add(
                Run(
                    id=run_id,
                    kind=kind,
                    params=params,
                    status="running",
                    prefect_flow_run_id=prefect_flow_run_id,
                    owner=owner,
                )
            )
        else:
            run.status, run.error, run.finished_at, run.owner = "running", None, None, owner


def finish_run(
    db: Database,
    run_id: str,
    status: str,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
    corpus_fingerprint: str | None = None,
) -> None:
    with db.transaction() as session:
        run = session.get(Run, run_id)
        if run is None:
            return
        run.status, run.error, run.finished_at = status, error, utcnow()
        if summary is not None:
            run.summary = summary
        if corpus_fingerprint is not None:
            run.corpus_fingerprint = corpus_fingerprint


def mark_dead_runs(db: Database) -> list[str]:
    """Runs left `running` by a process of this host that is gone (kill -9, out of memory, a reboot)
    become `crashed`, with what happened; returns their ids. Runs of other hosts are left alone."""
    marked = []
    with db.transaction() as session:
        for run in session.scalars(select(Run).where(Run.status == "running")):
            if is_alive(run.owner) is False:
                run.status, run.finished_at = "crashed", utcnow()
                run.error = f"its process ({describe(run.owner)}) ended without finishing the run"
                marked.append(run.id)
    for run_id in marked:
        log.warning("run %s was left running by a process that is gone: marked crashed", run_id)
    return marked


@contextmanager
def failed_on_error(db: Database, run_id: str, record: bool = True) -> Iterator[None]:
    """Mark the run failed, with the error's first line, when the block raises (an interrupt
    included), so that no stage command leaves a run `running` behind it; then re-raise."""
    try:
        yield
    except BaseException as exc:
        if record:
            finish_run(db, run_id, "failed", error=first_line(exc))
        raise
