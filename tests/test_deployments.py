"""`draftflow serve` for real: a Prefect server, the work pools, the deployments with their
schedule, the writer limit, the webhook automations, and workers; the nightly deployment is
triggered through the API three times and its drafts land in the database, its stage logs in the
flow run's logs; a night with a bad corpus fails once (a user error is not retried) and the webhook
is told; `draftflow stop` ends every process.

The three nights prove the cache keys through a worker: night 2 reads the draft an editor approved
after night 1 (a new source: the corpus stages run); the review-maintenance deployment then rewrites
the editor-approved export, as it does every 30 minutes; night 3 has nothing new and skips ingest,
clean and tokenize, although the base model is a new version every night.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.params import NightlyParams
from storage.db import open_database
from storage.models import Draft, Run
from storage.settings import Settings
from tasks.review import actions as editor
from tests.tiny import nightly_params


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, env: dict[str, str], timeout: int = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_serve_registers_the_deployments_and_a_triggered_night_writes_drafts(
    settings: Settings, corpus_dir: Path, prompts_file: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"DRAFTFLOW_HOME": str(settings.home), "PREFECT_HOME": str(tmp_path / "prefect"), "HF_HUB_OFFLINE": "1"}
    env["PREFECT_WORKER_QUERY_SECONDS"] = "1"  # workers pick up each triggered run within a second
    port = _free_port()
    hook, received = _webhook()
    started = _cli("serve", "--port", str(port), "--notify-url", hook, env=env)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        api = f"http://127.0.0.1:{port}/api"
        assert f"Prefect UI: http://127.0.0.1:{port}" in started.stdout
        params = nightly_params(str(corpus_dir), str(prompts_file), str(settings.home))
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name("draftflow-nightly/nightly")
            (schedule,) = nightly.schedules
            assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
                "0 2 * * *",
                "Europe/Berlin",
                True,
            )
            assert nightly.global_concurrency_limit.limit == 1 and nightly.work_pool_name == "default"
            assert client.read_deployment_by_name("draftflow-finetune/finetune-gpu").work_pool_name == "gpu"
            for name in (
                "draftflow-prepare/prepare-corpus",
                "draftflow-generate/generate",
                "draftflow-review-maintenance/review-maintenance",
            ):
                assert client.read_deployment_by_name(name).work_pool_name == "default"
            assert {p.name for p in client.read_work_pools()} >= {"default", "gpu"}
            assert client.read_global_concurrency_limit_by_name("draftflow-writer").limit == 1
            alerts = {a.name: a for a in client.read_automations()}
            assert {"draftflow: nightly failed", "draftflow: nightly overdue"} <= set(alerts)
            db = open_database(settings.database_url)
            first = _night(params, settings)
            with db.session() as s:
                statuses = {status for (status,) in s.execute(sa.select(Draft.status)).all()}
            assert statuses == {"pending"}
            assert first["cached_stages"] == [] and first["editor_approved_source"] is None
            # under a worker; its last lines reach the server's log table a moment after the run ends
            wanted, deadline = {"draftflow.finetune", "draftflow.generate"}, time.monotonic() + 60
            while not wanted <= (stage_loggers := {log.name for log in _flow_run_logs(client, first["run_id"])}):
                assert time.monotonic() < deadline, stage_loggers
                time.sleep(1)

            draft = editor.claim(db, "ann")
            assert draft is not None
            editor.approve(db, draft.id, "ann")
            second = _night(params, settings)
            assert second["editor_approved_source"] and second["files"]["new"] == 1
            assert "ingest" not in second["cached_stages"] and "clean" not in second["cached_stages"]
            maintenance = run_deployment(
                "draftflow-review-maintenance/review-maintenance", parameters={}, timeout=300, poll_interval=1
            )
            assert maintenance.state is not None and maintenance.state.is_completed(), _logs(settings)
            # overrides merge into the parameters instead of replacing them: corpus and budget stay
            third = _night(params, settings, overrides={"generation": {"samples_per_prompt": 1}})
            assert third["cached_stages"] == ["ingest", "clean", "tokenize"], (third, _logs(settings))
            assert third["model_version"] == "v0003" and third["base_model"] != second["base_model"]
            assert third["drafts_generated"] * 2 == first["drafts_generated"]

            bad = params.model_copy(update={"corpus": [str(tmp_path / "no-such-corpus")]})
            failed = run_deployment(
                "draftflow-nightly/nightly",
                parameters={"params": bad.model_dump(mode="json")},
                timeout=300,
                poll_interval=1,
            )
            assert failed.state is not None and failed.state.is_failed() and failed.run_count == 1  # not retried
            deadline = time.monotonic() + 90
            while not any(m.get("flow_run_id") == str(failed.id) for m in received) and time.monotonic() < deadline:
                time.sleep(1)
            told = [m for m in received if m.get("flow_run_id") == str(failed.id)]
            assert told and told[0]["state"] == "Failed" and "is Failed" in told[0]["text"], received
            assert all(m.get("flow_run_id") != str(first["run_id"]) for m in received)  # good nights are quiet
            assert client.read_global_concurrency_limit_by_name("draftflow-writer").active_slots == 0
    finally:
        stopped = _cli("stop", env=env, timeout=120)
    assert stopped.returncode == 0 and "server" in stopped.stdout and "worker-default" in stopped.stdout
    assert not list((settings.home / "serve").glob("*.pid"))


def _night(params: NightlyParams, settings: Settings, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trigger the nightly deployment, wait for it, and return the run's summary."""
    from prefect.deployments import run_deployment

    run = run_deployment(
        "draftflow-nightly/nightly",
        parameters={"params": params.model_dump(mode="json"), **({"overrides": overrides} if overrides else {})},
        timeout=400,
        poll_interval=1,
    )
    assert run.state is not None and run.state.is_completed(), (run.state, _logs(settings))
    with open_database(settings.database_url).session() as s:
        summary = s.get(Run, str(run.id))
        assert summary is not None and summary.summary, f"run {run.id} recorded no summary"
        return dict(summary.summary)


def _flow_run_logs(client: Any, flow_run_id: str) -> list[Any]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    # every page: a night logs more lines than one page holds (the API's page is 200 at most)
    logs: list[Any] = []
    while page := client.read_logs(
        LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=len(logs)
    ):
        logs += page
    return logs


def _webhook() -> tuple[str, list[dict[str, Any]]]:
    """A local webhook receiver (as a Slack incoming webhook would be): its URL and what it received."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hook", received


def _logs(settings: Settings) -> str:
    return "\n".join(p.read_text()[-2000:] for p in (settings.home / "serve").glob("*.log"))
