"""One writer per data home: the runs and stage commands that write the corpus, tokens, models or
drafts of a home take its lock, and a second one is refused with one line naming the holder.

The lock is an `flock` on `<home>/.draftflow.lock`, held by the process: the kernel releases it
when the process ends, however it ends (kill -9 included), so a crash never leaves a stale lock.
A process takes it once; the stages of a run that already holds it do not take it again.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from storage.errors import DraftflowError
from storage.models import utcnow
from storage.processes import describe, this_process

LOCK_NAME = ".draftflow.lock"
_held: dict[Path, IO[str]] = {}


@contextmanager
def home_lock(home: Path, what: str) -> Iterator[None]:
    """Hold `home`'s writer lock for `what` (e.g. `nightly run 1a2b`); refuse if another process has it."""
    home = Path(home).resolve()
    if home in _held:  # this process holds it already: a stage inside a run
        yield
        return
    home.mkdir(parents=True, exist_ok=True)
    handle = open(home / LOCK_NAME, "a+")  # noqa: SIM115 - held open for as long as the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = _holder(handle.read())
        handle.close()
        raise DraftflowError(
            f"another draftflow process is writing to {home}: {holder}; wait for it to finish, or use another "
            "--home (DRAFTFLOW_HOME)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"what": what, "owner": this_process(), "since": utcnow().isoformat(timespec="seconds")}))
    handle.flush()
    _held[home] = handle
    try:
        yield
    finally:
        del _held[home]
        handle.truncate(0)
        handle.close()  # closing the file releases the lock


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"{info['what']} ({describe(info['owner'])}, since {info['since']} UTC)"
    except (ValueError, KeyError, TypeError):
        return f"a process that holds {LOCK_NAME}"
