"""The temporary Prefect server of a `draftflow run` ends with it, even after `kill -9`.

Outside `draftflow serve`, Prefect starts a temporary API server as a child process and stops it at
exit; a killed `draftflow run` never reaches its exit, and the server lives on, orphaned, holding
memory and a port. A small watcher process (started in its own session, so a signal to the run's
process group does not end it first) notes the run's Prefect server children while the run lives,
and ends them once the run is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage.processes import start_ticks

SERVER_MARK = b"prefect.server.api.server:create_app"
POLL_SECONDS = 1.0


def watch_this_process() -> None:
    """Start the watcher for this process (the `draftflow run` that may start a temporary server)."""
    me = os.getpid()
    subprocess.Popen(
        [sys.executable, "-c", f"from flows.server_reaper import reap; reap({me}, {start_ticks(me)!r})"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def reap(parent: int, parent_start: str | None) -> None:
    """Wait for `parent` to end, then end the Prefect servers it started and left running."""
    servers: dict[int, str] = {}
    while start_ticks(parent) == parent_start:
        for pid in _children(parent):
            if pid not in servers and _is_prefect_server(pid):
                servers[pid] = start_ticks(pid) or ""
        time.sleep(POLL_SECONDS)
    for pid, start in servers.items():
        if start and start_ticks(pid) == start:  # still the same process, now orphaned
            os.kill(pid, signal.SIGTERM)


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
                found.append(int(entry))
    return found


def _is_prefect_server(pid: int) -> bool:
    try:
        return SERVER_MARK in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
