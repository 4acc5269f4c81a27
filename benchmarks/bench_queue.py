"""Review-queue latency at a million drafts, on SQLite and on a real PostgreSQL server.

For each backend: seed N drafts (default 1,000,000), then time
- claim (the guarded UPDATE … RETURNING, then a decision so the queue moves): p50 / p99
- the queue's list page: first page, a deep page by keyset cursor, and the same deep page by
  OFFSET (the baseline a naive pager would use): p50 / p99 and the OFFSET/keyset ratio
- a filtered page (category + flag) and the per-state counts
and compare claim latency at N with claim latency at 10,000 drafts (an indexed pick stays flat).
Run: .venv/bin/python -m benchmarks.bench_queue [--drafts 1000000] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from storage.db import Database, open_database
from storage.drafts import DraftFilter, query_drafts, status_counts
from storage.models import Draft, Prompt
from tasks.review import actions as editor
from testkit.queue_seed import seed_drafts


def percentiles(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def claim_and_decide(db: Database, runs: int) -> tuple[float, float]:
    counter = iter(range(10**9))
    # time the claim alone: decide outside the timer
    times = []
    for _ in range(runs):
        name = f"bench{next(counter) % 8}"
        started = time.perf_counter()
        draft = editor.claim(db, name)
        times.append((time.perf_counter() - started) * 1000)
        assert draft is not None
        editor.approve(db, draft.id, name)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def offset_page(db: Database, offset: int) -> None:
    with db.session() as s:
        s.execute(sa.select(Draft, Prompt).join(Prompt, Prompt.id == Draft.prompt_id)
                  .where(Draft.status == "pending").order_by(Draft.created_at, Draft.id)
                  .offset(offset).limit(50)).all()


def bench(db: Database, n: int, label: str) -> None:
    started = time.perf_counter()
    seed_drafts(db, 10_000, run_id="small")
    small_p50, small_p99 = claim_and_decide(db, 200)
    seed_drafts(db, n - 10_000, run_id="big")
    print(f"[{label}] seeded {n:,} drafts in {time.perf_counter() - started:.0f} s")
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
    claim_p50, claim_p99 = claim_and_decide(db, 500)
    deep = n // 2
    with db.session() as s:
        row = s.execute(sa.select(Draft.created_at, Draft.id).where(Draft.status == "pending")
                        .order_by(Draft.created_at, Draft.id).offset(deep).limit(1)).one()
    cursor = (row.created_at.isoformat(), row.id)
    first = percentiles(lambda: query_drafts(db, DraftFilter(status="pending")), 50)
    keyset = percentiles(lambda: query_drafts(db, DraftFilter(status="pending"), after=cursor), 50)
    offset = percentiles(lambda: offset_page(db, deep), 10)
    filtered = percentiles(lambda: query_drafts(db, DraftFilter(status="pending", category="news"), after=cursor), 20)
    flag_scan = percentiles(lambda: query_drafts(db, DraftFilter(status="pending", flag="copied")), 5)
    counts = percentiles(lambda: status_counts(db), 10)
    print(f"[{label}] claim at {n:,} drafts: p50 {claim_p50:.2f} ms, p99 {claim_p99:.2f} ms "
          f"(at 10,000: p50 {small_p50:.2f}, p99 {small_p99:.2f}; ratio {claim_p50 / small_p50:.2f})")
    print(f"[{label}] list page 1: p50 {first[0]:.2f} ms, p99 {first[1]:.2f} ms")
    print(f"[{label}] list page at row {deep:,}, keyset: p50 {keyset[0]:.2f} ms, p99 {keyset[1]:.2f} ms; "
          f"OFFSET baseline: p50 {offset[0]:.1f} ms, p99 {offset[1]:.1f} ms; "
          f"OFFSET/keyset {offset[0] / keyset[0]:.0f}x")
    print(f"[{label}] deep page filtered by category: p50 {filtered[0]:.2f} ms, p99 {filtered[1]:.2f} ms")
    print(f"[{label}] flag filter with no match (a scan of the state): p50 {flag_scan[0]:.0f} ms")
    print(f"[{label}] counts per state: p50 {counts[0]:.1f} ms, p99 {counts[1]:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drafts", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        home = Path(tempfile.mkdtemp(prefix="draftflow-bench-queue-"))
        bench(open_database(f"sqlite:///{home / 'draftflow.db'}"), args.drafts, "sqlite")
    if args.backend in ("postgresql", "both"):
        from testkit.postgres_server import postgres_server

        with postgres_server() as url:
            db = open_database(url)
            bench(db, args.drafts, "postgresql")
            db.dispose()


if __name__ == "__main__":
    main()
