"""`draftflow serve` / `draftflow stop`: a production-like Prefect setup on one box.

serve: start a Prefect server on 127.0.0.1 (unless PREFECT_API_URL already points at one), create
the `default` and `gpu` process work pools, the `gpu` tag concurrency limit and the
`draftflow-writer` global concurrency limit (one deployment run writes to the data home at a
time), free slots a dead holder leaked, register the deployments of deployments/prefect.yaml
(schedules included), create the failed/late/overdue-night automations when a webhook is given, and
start one worker per pool. The server keeps its concurrency leases on disk, so a restart does not
forget who holds a slot (a forgotten lease would keep its slot taken for ever).
Each process runs in its own session (it outlives this command) with its pid and log under
`$DRAFTFLOW_HOME/serve/`; stop ends exactly those processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from storage.errors import DraftflowError
from storage.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
POOLS = {"default": None, "gpu": 1}  # pool -> concurrency limit (the GPU pool runs one job at a time)
STARTUP_SECONDS = 180  # a cold Prefect server takes ~20-40 s on 2 cores


def serve(
    settings: Settings,
    port: int = 4200,
    gpu_slots: int = 1,
    workers: bool = True,
    notify_url: str | None = None,
    overdue_hours: float = 6.0,
) -> dict[str, Any]:
    state = settings.home / "serve"
    state.mkdir(parents=True, exist_ok=True)
    env = _env(settings, state)
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if api:
        _wait_healthy(api, seconds=10)
    else:
        api = f"http://127.0.0.1:{port}/api"
        ours = _running(state, "server")
        if _healthy(api) and not ours:
            raise DraftflowError(f"something else answers on {api}: stop it or pick another --port")
        if not ours:  # a second `serve` reuses the server it started and registers again
            _spawn(state, "server", [_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env)
        _wait_healthy(api, seconds=STARTUP_SECONDS, log=state / "server.log")
    env["PREFECT_API_URL"] = api
    _run([sys.executable, "-c", f"from flows.serve import _setup_api; _setup_api({gpu_slots})"], env, "set-up")
    _run([_prefect(), "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)], env, "deploy")
    if notify_url:  # the automations name the nightly deployment: after deploy
        alerts = f"from flows.notifications import create_nightly_alerts as c; c({notify_url!r}, {overdue_hours!r})"
        _run([sys.executable, "-c", alerts], env, "notifications")
    if workers:
        for pool in POOLS:
            if not _running(state, f"worker-{pool}"):
                _spawn(
                    state, f"worker-{pool}", [_prefect(), "worker", "start", "--pool", pool, "--type", "process"], env
                )
    (state / "api.json").write_text(json.dumps({"api": api}))
    return {
        "notifications": "failed, crashed, timed-out, late and overdue nights" if notify_url else None,
        "api": api,
        "ui": api.removesuffix("/api"),
        "state": str(state),
        "deployments": [
            "draftflow-nightly/nightly",
            "draftflow-prepare/prepare-corpus",
            "draftflow-finetune/finetune-gpu",
            "draftflow-generate/generate",
            "draftflow-review-maintenance/review-maintenance",
        ],
    }


def stop(settings: Settings) -> list[str]:
    """End the processes `serve` started (workers first, then the server)."""
    state = settings.home / "serve"
    stopped = []
    for name in ("worker-gpu", "worker-default", "server"):
        pid_file = state / f"{name}.pid"
        if not pid_file.is_file():
            continue
        pid = int(pid_file.read_text())
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(name)
        pid_file.unlink()
    return stopped


def _setup_api(gpu_slots: int) -> None:
    """Work pools and the gpu tag limit on the API in PREFECT_API_URL (idempotent)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists

    from flows.run_guards import WRITER_LIMIT
    from flows.setup import setup_prefect
    from flows.slot_leaks import free_leaked_slots

    with get_client(sync_client=True) as client:
        for pool, limit in POOLS.items():
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process", concurrency_limit=limit))
            except ObjectAlreadyExists:
                client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=limit))
    setup_prefect(gpu_slots)
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=WRITER_LIMIT, limit=1))
    free_leaked_slots()  # a restarted server may count slots whose holders are gone


def _env(settings: Settings, state: Path) -> dict[str, str]:
    from flows.prefect_env import configure_prefect_env

    configure_prefect_env()
    env = {**os.environ, "DRAFTFLOW_HOME": str(settings.home), "DRAFTFLOW_REPO": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.setdefault("PREFECT_HOME", str(state / "prefect"))  # the server's own database lives here
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "5")
    # leases on disk (under PREFECT_HOME): a restarted server still knows who holds the gpu slot,
    # and frees it when its holder stops renewing; in memory they die with the server
    env.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", "prefect.server.concurrency.lease_storage.filesystem")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _prefect() -> str:
    found = Path(sys.executable).with_name("prefect")
    if not found.exists():
        raise DraftflowError(f"the prefect command is not installed next to {sys.executable}")
    return str(found)


def _running(state: Path, name: str) -> bool:
    pid_file = state / f"{name}.pid"
    return pid_file.is_file() and _alive(int(pid_file.read_text()))


def _spawn(state: Path, name: str, cmd: list[str], env: dict[str, str]) -> int:
    pid_file = state / f"{name}.pid"
    if pid_file.is_file() and _alive(int(pid_file.read_text())):
        raise DraftflowError(f"{name} is running already (pid {pid_file.read_text()}): `draftflow stop` first")
    with (state / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )  # its own process group: stop ends its children too
    pid_file.write_text(str(proc.pid))
    return proc.pid


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise DraftflowError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-1500:]}")


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_healthy(api: str, seconds: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _healthy(api):
            return
        time.sleep(0.5)
    tail = log.read_text()[-1500:] if log and log.is_file() else ""
    raise DraftflowError(f"the Prefect API at {api} did not answer within {seconds:.0f} s{': ' + tail if tail else ''}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True
