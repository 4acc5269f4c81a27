"""Find and free concurrency slots whose holder is gone.

Prefect counts a limit's taken slots in its database and keeps each holder's lease beside it. A
holder that dies stops renewing its lease and the server frees the slot when the lease expires,
but a server that kept its leases in memory (Prefect's default) forgets them on restart and the
count stays up for ever: every later fine-tune waits on the `gpu` tag, Pending. `draftflow serve`
keeps leases on disk so a restart does not lose them; this check frees what leaked anyway (it runs
in the review-maintenance flow and when `draftflow serve` starts), with a log line for each.

A slot is leaked when the limit counts more taken slots than there can be holders: for a tag limit,
the leases the server holds; for `draftflow-writer`, the draftflow flow runs still running. Both
numbers are read twice, a second apart, so a slot taken between two reads is not mistaken for one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flows.run_guards import WRITER_LIMIT
from flows.setup import GPU_TAG

log = logging.getLogger("draftflow.slots")
WRITER_FLOWS = ["draftflow-nightly", "draftflow-prepare", "draftflow-generate", "draftflow-finetune"]


def free_leaked_slots(recheck_seconds: float = 1.0) -> dict[str, int]:
    """{limit name: slots freed} for the `gpu` tag limit and the writer limit, where they exist."""
    from prefect.client.orchestration import get_client

    freed: dict[str, int] = {}
    with get_client(sync_client=True) as client:
        checks = {f"tag:{GPU_TAG}": lambda: _tag_holders(client, GPU_TAG), WRITER_LIMIT: lambda: _writers(client)}
        first = {name: _excess(client, name, holders) for name, holders in checks.items()}
        if any(first.values()):
            time.sleep(recheck_seconds)
        for name, holders in checks.items():
            if not first[name]:
                continue
            limit = _limit(client, name)
            now = holders()
            if limit is None or limit.active_slots <= now:
                continue
            leaked = limit.active_slots - now
            _set_active_slots(client, name, now)
            freed[name] = leaked
            log.warning(
                "freed %d leaked slot(s) of the concurrency limit %s: it counted %d taken with %d holder(s) alive",
                leaked,
                name,
                limit.active_slots,
                now,
            )
    return freed


def _excess(client: Any, name: str, holders: Any) -> int:
    limit = _limit(client, name)
    return 0 if limit is None else max(0, limit.active_slots - holders())


def _limit(client: Any, name: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return None


def _tag_holders(client: Any, tag: str) -> int:
    return len(client.read_concurrency_limit_by_tag(tag).active_slots)  # the task runs holding a lease


def _writers(client: Any) -> int:
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    running = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=WRITER_FLOWS)),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.CANCELLING]))
        ),
        limit=200,
    )
    return len(running)


def _set_active_slots(client: Any, name: str, slots: int) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=slots))
