"""Which process owns a run, and whether it is still alive: how a run left `running` by a process
that was killed (kill -9, a reboot, an out-of-memory kill) is told apart from one still working.

A process is named `host:pid:start` where `start` is its start time in clock ticks since boot
(/proc/<pid>/stat), so a reused pid is not mistaken for the original process.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def start_ticks(pid: int) -> str | None:
    """The start time of a live process (clock ticks since boot); None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count fields after its last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def this_process() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{start_ticks(pid) or '?'}"


def is_alive(owner: str | None) -> bool | None:
    """True or False for a process of this host; None when it cannot be told (another host, no owner)."""
    if not owner or owner.count(":") < 2:
        return None
    host, pid, start = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return None
    ticks = start_ticks(int(pid))
    return ticks is not None and (start == "?" or ticks == start)


def describe(owner: str | None) -> str:
    if not owner or owner.count(":") < 2:
        return "an unknown process"
    host, pid, _ = owner.rsplit(":", 2)
    return f"pid {pid} on {host}"
