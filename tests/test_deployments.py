"""`draftflow serve` for real: a Prefect server, the work pools, the deployments with their
schedule, and workers; the nightly deployment is triggered through the API three times and its
drafts land in the database; `draftflow stop` ends every process.

The three nights prove the cache keys through a worker: night 2 reads the draft an editor approved
after night 1 (a new source: the corpus stages run); the review-maintenance deployment then rewrites
the editor-approved export, as it does every 30 minutes; night 3 has nothing new and skips ingest,
clean and tokenize, although the base model is a new version every night.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
    port = _free_port()
    started = _cli("serve", "--port", str(port), env=env)
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
            db = open_database(settings.database_url)
            first = _night(params, settings)
            with db.session() as s:
                statuses = {status for (status,) in s.execute(sa.select(Draft.status)).all()}
            assert statuses == {"pending"}
            assert first["cached_stages"] == [] and first["editor_approved_source"] is None

            draft = editor.claim(db, "ann")
            assert draft is not None
            editor.approve(db, draft.id, "ann")
            second = _night(params, settings)
            assert second["editor_approved_source"] and second["files"]["new"] == 1
            assert "ingest" not in second["cached_stages"] and "clean" not in second["cached_stages"]
            maintenance = run_deployment(
                "draftflow-review-maintenance/review-maintenance", parameters={}, timeout=300, poll_interval=2
            )
            assert maintenance.state is not None and maintenance.state.is_completed(), _logs(settings)
            third = _night(params, settings)
            assert third["cached_stages"] == ["ingest", "clean", "tokenize"], (third, _logs(settings))
            assert third["model_version"] == "v0003" and third["base_model"] != second["base_model"]
    finally:
        stopped = _cli("stop", env=env, timeout=120)
    assert stopped.returncode == 0 and "server" in stopped.stdout and "worker-default" in stopped.stdout
    assert not list((settings.home / "serve").glob("*.pid"))


def _night(params: NightlyParams, settings: Settings) -> dict[str, Any]:
    """Trigger the nightly deployment, wait for it, and return the run's summary."""
    from prefect.deployments import run_deployment

    run = run_deployment(
        "draftflow-nightly/nightly", parameters={"params": params.model_dump(mode="json")}, timeout=400, poll_interval=2
    )
    assert run.state is not None and run.state.is_completed(), (run.state, _logs(settings))
    with open_database(settings.database_url).session() as s:
        summary = s.get(Run, str(run.id))
        assert summary is not None and summary.summary, f"run {run.id} recorded no summary"
        return dict(summary.summary)


def _logs(settings: Settings) -> str:
    return "\n".join(p.read_text()[-2000:] for p in (settings.home / "serve").glob("*.log"))
