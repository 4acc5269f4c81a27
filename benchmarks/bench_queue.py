"""Review-queue latency at a million drafts, on SQLite and on a real PostgreSQL server.

For each backend: seed N drafts (default 1,000,000), then time
- claim (the guarded UPDATE … RETURNING, then a decision so the queue moves): p50 / p99 of 1,000
- the queue's list page: first page, a deep page by keyset cursor (p50 / p99 of 500 each), and the
  same deep page by OFFSET (the baseline a naive pager would use; p50 and max of 10: each takes ~0.1-0.5 s)
- a filtered page (category + flag) and the per-state counts
and compare claim latency at N with claim latency at 10,000 drafts (an indexed pick stays flat).
Targets: claim p50 at N <= 1.5x at 10,000; deep keyset page p50 <= 2x page 1; OFFSET >= 10x keyset.
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

from benchmarks.common import Targets
from storage.db import Database, open_database
from storage.drafts import DraftFilter, query_drafts, status_counts
from storage.models import Draft, Prompt
from tasks.review import actions as editor
from testkit.queue_seed import seed_drafts


def _p50_p99(times: list[float]) -> tuple[float, float]:
    """Median and 99th percentile; with fewer than 100 samples the second figure is the maximum."""
    times = sorted(times)
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def percentiles(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return _p50_p99(times)


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
    return _p50_p99(times)


def offset_page(db: Database, offset: int) -> None:
    with db.session() as s:
        s.execute(
            sa.select(Draft, Prompt)
            .join(Prompt, Prompt.id == Draft.prompt_id)
            .where(Draft.status == "pending")
            .order_by(Draft.created_at, Draft.id)
            .offset(offset)
            .limit(50)
        ).all()


def bench(db: Database, n: int, label: str, targets: Targets) -> None:
    started = time.perf_counter()
    seed_drafts(db, 10_000, run_id="small")
    small_p50, small_p99 = claim_and_decide(db, 1000)
    seed_drafts(db, n - 10_000, run_id="big")
    print(f"[{label}] seeded {n:,} drafts in {time.perf_counter() - started:.0f} s")
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
    claim_p50, claim_p99 = claim_and_decide(db, 1000)
    deep = n // 2
    with db.session() as s:
        row = s.execute(
            sa.select(Draft.created_at, Draft.id)
            .where(Draft.status == "pending")
            .order_by(Draft.created_at, Draft.id)
            .offset(deep)
            .limit(1)
        ).one()
    cursor = (row.created_at.isoformat(), row.id)
    first = percentiles(lambda: query_drafts(db, DraftFilter(status="pending")), 500)
    keyset = percentiles(lambda: query_drafts(db, DraftFilter(status="pending"), after=cursor), 500)
    offset = percentiles(lambda: offset_page(db, deep), 10)
    filtered = percentiles(lambda: query_drafts(db, DraftFilter(status="pending", category="news"), after=cursor), 500)
    flag_scan = percentiles(lambda: query_drafts(db, DraftFilter(status="pending", flag="copied")), 5)
    counts = percentiles(lambda: status_counts(db), 20)
    print(
        f"[{label}] claim at {n:,} drafts: p50 {claim_p50:.2f} ms, p99 {claim_p99:.2f} ms "
        f"(at 10,000: p50 {small_p50:.2f}, p99 {small_p99:.2f}; ratio {claim_p50 / small_p50:.2f})"
    )
    print(f"[{label}] list page 1: p50 {first[0]:.2f} ms, p99 {first[1]:.2f} ms")
    print(
        f"[{label}] list page at row {deep:,}, keyset: p50 {keyset[0]:.2f} ms, p99 {keyset[1]:.2f} ms; "
        f"OFFSET baseline: p50 {offset[0]:.1f} ms, max of 10 {offset[1]:.1f} ms"
    )
    print(f"[{label}] deep page filtered by category: p50 {filtered[0]:.2f} ms, p99 {filtered[1]:.2f} ms")
    print(f"[{label}] flag filter with no match (a scan of the state): p50 of 5 {flag_scan[0]:.0f} ms")
    print(f"[{label}] counts per state: p50 {counts[0]:.1f} ms, max of 20 {counts[1]:.1f} ms")
    targets.check(f"[{label}] claim p50 at {n:,} / at 10,000", claim_p50 / small_p50, "<=", 1.5)
    targets.check(f"[{label}] deep keyset page p50 / page 1 p50", keyset[0] / first[0], "<=", 2)
    targets.check(f"[{label}] OFFSET page / keyset page (p50)", offset[0] / keyset[0], ">=", 10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drafts", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    targets = Targets()
    if args.backend in ("sqlite", "both"):
        home = Path(tempfile.mkdtemp(prefix="draftflow-bench-queue-"))
        bench(open_database(f"sqlite:///{home / 'draftflow.db'}"), args.drafts, "sqlite", targets)
    if args.backend in ("postgresql", "both"):
        from testkit.postgres_server import postgres_server

        with postgres_server() as url:
            db = open_database(url)
            bench(db, args.drafts, "postgresql", targets)
            db.dispose()
    targets.finish()


if __name__ == "__main__":
    main()
