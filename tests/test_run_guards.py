"""What every deployment flow does first, with real parts: partial parameters merged into the
deployment's, leaked concurrency slots found and freed on a real Prefect API, a user error not
retried while another failure is, and a flow-run process ending when its worker is killed -9."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect import flow, task

from flows.params import NightlyParams
from flows.run_guards import WRITER_LIMIT, with_overrides
from flows.slot_leaks import free_leaked_slots
from storage.errors import DraftflowError
from tasks.train.params import TrainParams


def test_overrides_merge_key_by_key_into_the_deployments_parameters() -> None:
    deployed = NightlyParams.model_validate(
        {"corpus": ["/data/news"], "home": "/srv/home", "training": {"max_minutes": 30, "learning_rate": 1e-4}}
    )
    merged = with_overrides(deployed, {"training": {"max_minutes": 5}, "generation": {"samples_per_prompt": 4}})
    assert merged.corpus == ["/data/news"] and merged.home == "/srv/home"  # kept, unlike --param params=...
    assert merged.training.max_minutes == 5 and merged.training.learning_rate == 1e-4
    assert merged.generation.samples_per_prompt == 4
    assert with_overrides(deployed, None) is deployed
    with pytest.raises(DraftflowError, match=r"^overrides: unknown key 'training.max_step' \(did you mean"):
        with_overrides(deployed, {"training": {"max_step": 5}})
    with pytest.raises(DraftflowError, match=r"^overrides: training.max_minutes"):
        with_overrides(deployed, {"training": {"max_minutes": -1}})
    assert TrainParams().max_minutes != 5  # the merge did not touch the defaults


def test_leaked_slots_are_freed_with_a_log_line_and_a_live_holder_keeps_its_slot(
    prefect_harness: None, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate

    from flows.setup import setup_prefect

    setup_prefect(1)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=WRITER_LIMIT, limit=1))

        @task(tags=["gpu"])
        def holds_the_gpu() -> dict[str, int]:
            return free_leaked_slots(recheck_seconds=0.1)  # its own slot is live: nothing to free

        @flow
        def fine_tune_like() -> dict[str, int]:
            return holds_the_gpu()

        assert fine_tune_like() == {}
        assert client.read_global_concurrency_limit_by_name("tag:gpu").active_slots == 0  # released on the way out

        # what a server that forgot its leases in a restart is left with: slots counted, no holder
        for name in ("tag:gpu", WRITER_LIMIT):
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=1))
        with caplog.at_level(logging.WARNING, logger="draftflow.slots"):
            assert free_leaked_slots(recheck_seconds=0.1) == {"tag:gpu": 1, WRITER_LIMIT: 1}
        assert "freed 1 leaked slot(s) of the concurrency limit tag:gpu" in caplog.text
        for name in ("tag:gpu", WRITER_LIMIT):
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
        assert free_leaked_slots(recheck_seconds=0.1) == {}


def test_a_user_error_is_not_retried_and_another_failure_is(prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    from flows.run_guards import user_errors_not_retried

    runs: dict[str, int] = {}

    @flow(retries=1, retry_delay_seconds=0)
    def guarded(error: str) -> None:
        runs[error] = runs.get(error, 0) + 1
        runs["id:" + error] = flow_run.get_id()  # type: ignore[assignment]
        with user_errors_not_retried():
            if error == "user":
                raise DraftflowError("no such corpus: /nowhere")
            if runs[error] == 1:
                raise RuntimeError("the database went away")

    with pytest.raises(DraftflowError):
        guarded("user")
    guarded("transient")  # passes on its retry
    assert runs["user"] == 1 and runs["transient"] == 2
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(runs["id:user"]).state.is_failed()  # type: ignore[arg-type,union-attr]


FAKE_WORKER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[3]])
print(child.pid, flush=True)
time.sleep(600)
"""

FLOW_PROCESS = """
import signal, sys, time
import flows.run_guards as guards
guards.WATCH_SECONDS = 0.2
signal.signal(signal.SIGTERM, lambda *_: (print("terminated", flush=True), sys.exit(143)))
print("watching", guards.die_with_worker(), flush=True)
time.sleep(600)
"""


def test_a_flow_run_process_ends_when_its_worker_is_killed(tmp_path: Path) -> None:
    """The process tree of a Prefect process worker: `prefect worker start` -> the flow-run process."""
    worker_script = tmp_path / "prefect"  # its command line reads `... prefect worker start`, like the real one
    worker_script.write_text(FAKE_WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    worker = subprocess.Popen(
        [sys.executable, str(worker_script), "worker", "start", FLOW_PROCESS],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert worker.stdout is not None
    child = int(worker.stdout.readline())
    assert worker.stdout.readline().split() == ["watching", str(worker.pid)]  # it found its worker
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the orphaned flow-run process outlived its worker"


def _alive(pid: int) -> bool:
    from storage.processes import start_ticks

    return start_ticks(pid) is not None
