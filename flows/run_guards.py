"""What every deployment flow does before its first stage: merge the operator's partial parameters
into the deployment's, take the data home's writer slot, and end itself if its worker dies.

- Overrides: `prefect deployment run ... --param params=...` replaces a deployment's parameters
  whole (its home, corpus and budget are lost). Each flow therefore takes a second parameter,
  `overrides`, merged key by key into `params`.
- One writer per home, across processes and deployments: deployment runs share the Prefect global
  concurrency limit `draftflow-writer` (created by `draftflow serve`), so a prepare-corpus run queued
  behind a night waits for it instead of racing it; every process also takes the home's file lock,
  which refuses a second writer outside Prefect (a CLI run) with one line naming the holder. The
  limit's slot is leased: a killed flow stops renewing it and the server frees it.
- An orphaned flow-run process (its `prefect worker` killed, `make stop`) would go on training and
  writing with nobody to report its end; it is ended with SIGTERM, which Prefect's engine turns into
  a Crashed state, and our own `except` marks the run failed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from pydantic import ValidationError

from storage.errors import DraftflowError
from storage.home_lock import home_lock
from storage.params import Params, first_problem
from storage.processes import start_ticks
from storage.settings import Settings

WRITER_LIMIT = "draftflow-writer"
WATCH_SECONDS = 2.0  # how often an orphan checks for its worker
KILL_AFTER_SECONDS = 120.0  # a flow that ignores SIGTERM that long (stuck in native code) is killed

log = logging.getLogger("draftflow.guards")
P = TypeVar("P", bound=Params)


def start_flow(params: P, overrides: dict[str, Any] | None) -> tuple[P, Settings]:
    """A deployment flow's first lines: its parameters with the overrides merged, its data home's
    settings, and the flow-run process set up (stage loggers, the worker watch)."""
    params = with_overrides(params, overrides)
    settings = Settings.from_env(getattr(params, "home", None))
    flow_process(settings)
    return params, settings


def with_overrides(params: P, overrides: dict[str, Any] | None) -> P:
    """`params` with `overrides` merged in key by key (nested sections too); a bad key is one line."""
    if not overrides:
        return params
    merged = _deep_merge(params.model_dump(mode="json", exclude_unset=True), overrides)
    try:
        return type(params).model_validate(merged)
    except ValidationError as exc:
        raise DraftflowError(f"overrides: {first_problem(exc, type(params))}") from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@contextmanager
def user_errors_not_retried() -> Iterator[None]:
    """A flow's retries are for what may pass next time (a lost connection, an out-of-memory step);
    a user error (a bad path, an empty corpus) would fail again: its flow run is not retried."""
    try:
        yield
    except DraftflowError:
        _stop_retries()
        raise


def _stop_retries() -> None:
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if not run_id:
        return
    try:
        with get_client(sync_client=True) as client:
            policy = client.read_flow_run(UUID(run_id)).empirical_policy
            policy.retries = 0  # the server's retry rule reads the run's own policy
            client.update_flow_run(UUID(run_id), empirical_policy=policy)
    except Exception as exc:  # never hide the user's error behind ours
        log.warning("could not turn off this flow run's retries: %s", exc)


@contextmanager
def home_writer(settings: Settings, what: str) -> Iterator[None]:
    """The writer slot across deployment runs (waits), then the home's file lock (refuses)."""
    with writer_slot(), home_lock(settings.home, what):
        yield


@contextmanager
def writer_slot() -> Iterator[None]:
    """Hold `draftflow-writer` when this is a top-level deployment run and the limit exists."""
    if not _top_level_deployment_run() or not _limit_exists(WRITER_LIMIT):
        yield
        return
    from prefect.concurrency.sync import concurrency

    log.info("waiting for the %s slot (one deployment run writes to the data home at a time)", WRITER_LIMIT)
    # strict=False: the limit was checked above, and a lease renewal that fails while the server
    # restarts must not end the run (the slot is freed if its holder dies)
    with concurrency(WRITER_LIMIT, occupy=1, strict=False):
        log.info("holding the %s slot", WRITER_LIMIT)
        yield


def _top_level_deployment_run() -> bool:
    """A run a worker started from a deployment, and not one a parent flow started (the nightly's
    fine-tune on the GPU pool: its parent holds the slot already)."""
    from prefect.runtime import deployment, flow_run

    return bool(deployment.id) and flow_run.parent_flow_run_id is None


def _limit_exists(name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return False
    return True


# -- an orphaned flow-run process ends itself ----------------------------------------------------------------

_watching = False


def flow_process(settings: Settings) -> None:
    """What a flow-run process needs before its stages: the `draftflow.*` stage loggers at the home's
    log level (a worker's flow-run process skips the CLI's set-up, and a logger left unset inherits
    WARNING: no stage line would reach the flow run's logs in the UI), and the worker watch."""
    logging.getLogger("draftflow").setLevel(settings.log_level)
    die_with_worker()


def die_with_worker() -> int | None:
    """When a `prefect worker` process is among this process's ancestors, watch it and end this flow
    run if it goes; returns the worker's pid (None when not run by a worker)."""
    global _watching
    found = _worker_ancestor(os.getpid())
    if found is None or _watching:
        return found[0] if found else None
    _watching = True
    pid, start = found
    threading.Thread(target=_watch, args=(pid, start), name="draftflow-worker-watch", daemon=True).start()
    return pid


def _watch(pid: int, start: str) -> None:
    while start_ticks(pid) == start:
        time.sleep(WATCH_SECONDS)
    log.error("the Prefect worker that started this flow run (pid %d) is gone: ending the run", pid)
    os.kill(os.getpid(), signal.SIGTERM)  # the engine marks the run Crashed; `finally` blocks run
    time.sleep(KILL_AFTER_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)  # the kernel still releases the home's lock


def _worker_ancestor(pid: int) -> tuple[int, str] | None:
    """(pid, start time) of the nearest ancestor whose command line is `prefect worker start`."""
    seen = 0
    while pid > 1 and seen < 32:
        pid = _parent_of(pid)
        seen += 1
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        words = [Path(a.decode(errors="replace")).name for a in argv if a]
        if "worker" in words and "start" in words and any(w.startswith("prefect") for w in words):
            start = start_ticks(pid)
            return (pid, start) if start else None
    return None


def _parent_of(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[1])
