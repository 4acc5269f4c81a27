"""A real, throwaway PostgreSQL server for the tests: initdb in a temp folder, started with pg_ctl on
a free port, stopped at the end of the session. Needs Debian's `postgresql` package (CI installs it).

The server refuses to run as root, so as root the commands run as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(
        "PostgreSQL is not installed (initdb not found): `apt-get install postgresql` (.ci/run does this)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the SQLAlchemy URL of a fresh database on a server of its own."""
    bin_dir, port = _bin_dir(), _free_port()
    root = Path(tempfile.mkdtemp(prefix="draftflow-pg-"))
    data, log = root / "data", root / "server.log"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {done.stderr[-2000:]}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "draftflow", "--auth=trust", "-E", "UTF8", "--no-sync")
    # max_connections above the 16-connection test; fsync off: a test server, not a store of record
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(log),
        "-w",
        "-t",
        "60",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off",
        "start",
    )
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "draftflow", "draftflow")
        yield f"postgresql+psycopg://draftflow@127.0.0.1:{port}/draftflow"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
