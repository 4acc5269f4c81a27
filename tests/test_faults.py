"""Fault injection on the whole night, with real processes and real signals (`make test-faults`).

`draftflow run` is killed with SIGKILL at each stage boundary and inside tokenize, fine-tune and
generate, then started again under the same run id. Each time: no half-written folder is left, no
run is left `running`, no draft is left `generated`, the run id has exactly one model version, and
the drafts are the ones an uninterrupted night writes (same prompts, samples and text). Two
`draftflow run` at once on one home: the second is refused with one line naming the first, which
finishes. A killed run's temporary Prefect server does not outlive it. A Prefect server killed and
restarted during a fine-tune on the gpu pool: the run completes and the `gpu` slot is free.
The counts of faults injected and survived are in the README's reliability section.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.db import close_databases, open_database
from storage.models import Draft, ModelEvaluation, ModelVersion, Run
from storage.settings import Settings
from tasks.recovery import DEBRIS_PATTERNS
from tests.cli_helpers import kill_when
from tests.tiny import nightly_params

pytestmark = [pytest.mark.slow, pytest.mark.faults]

RUN_ID = "night-1"
PROMPTS, SAMPLES = 3, 2  # the prompts_file fixture's prompts x the samples per prompt below


def _config(tmp: Path, corpus: Path, prompts: Path) -> Path:
    params = nightly_params(str(corpus), str(prompts), home="").model_dump(mode="json", exclude={"home"})
    # long enough to be killed between two checkpoints; a batch of two drafts at a time
    params["training"].update(max_steps=30, checkpoint_interval=10, eval_interval=10, max_minutes=5)
    params["generation"].update(samples_per_prompt=SAMPLES, batch_size=2)
    path = tmp / "night.json"
    path.write_text(json.dumps(params))
    return path


def _night(home: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "--home", str(home), "run", "--config", str(config), "--run-id", RUN_ID]


def _drafts(home: Path) -> dict[tuple[int, int], str]:
    db = open_database(Settings.from_env(home).database_url)
    with db.session() as s:
        rows = s.execute(
            sa.select(Draft.prompt_id, Draft.sample_index, Draft.original_text).where(Draft.run_id == RUN_ID)
        )
        return {(p, i): t for p, i, t in rows}


def _count(home: Path, query: sa.Select) -> int:  # type: ignore[type-arg]
    try:
        with open_database(Settings.from_env(home).database_url).session() as s:
            return int(s.scalar(query) or 0)
    except Exception:  # the database is not there yet, or is being created
        return 0


def _has(folder: Path, pattern: str) -> bool:
    return folder.is_dir() and any(folder.glob(pattern))


BOUNDARIES: dict[str, Callable[[Path], bool]] = {
    # the moment the stage's output is committed, before the next stage has done anything visible
    "after ingest": lambda h: _has(h / "corpus" / "raw", "**/*.parquet"),
    "after clean": lambda h: _has(h / "corpus" / "clean", "**/*.parquet"),
    "inside tokenize": lambda h: _has(h / "tokens", "**/.staging-*") or _has(h / "tokens", "**/.tokenizer-*"),
    "after tokenize": lambda h: (h / "tokens" / "latest.json").is_file(),
    "inside fine-tune": lambda h: _has(h / "checkpoints" / RUN_ID, "step-0000010"),
    "after fine-tune": lambda h: _count(h, sa.select(sa.func.count()).select_from(ModelVersion)) >= 1,
    "inside evaluate": lambda h: _count(h, sa.select(sa.func.count()).select_from(ModelEvaluation)) >= 1,
    "inside generate": lambda h: _count(h, sa.select(sa.func.count()).select_from(Draft)) >= 2,
    "after generate": lambda h: _count(h, sa.select(sa.func.count()).select_from(Draft)) >= PROMPTS * SAMPLES,
}


def _orphaned_prefect_servers() -> list[int]:
    """Prefect API servers whose parent is gone (reparented to init)."""
    from flows.server_reaper import SERVER_MARK, _children

    return [pid for pid in _children(1) if SERVER_MARK in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[tuple[int, int], str], Path, Path]:
    """The drafts of a night nobody killed, and the inputs every faulty night uses."""
    from tests.conftest import write_corpus

    tmp = tmp_path_factory.mktemp("faults")
    corpus = write_corpus(tmp / "corpus")
    prompts = tmp / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": k, "text": t}) + "\n"
            for k, t in [("a", "The module returns"), ("b", "A thread queue is"), ("c", "When the object is")]
        )
    )
    config = _config(tmp, corpus, prompts)
    home = tmp / "home"
    done = subprocess.run(_night(home, config), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    drafts = _drafts(home)
    assert len(drafts) == PROMPTS * SAMPLES
    close_databases()
    return drafts, config, tmp


@pytest.mark.parametrize("where", list(BOUNDARIES))
def test_a_night_killed_then_run_again_ends_as_if_never_killed(
    where: str, uninterrupted: tuple[dict[tuple[int, int], str], Path, Path], tmp_path: Path
) -> None:
    expected, config, _ = uninterrupted
    home = tmp_path / "home"
    ready = BOUNDARIES[where]
    assert kill_when(_night(home, config), lambda: ready(home), seconds=400), f"the night ended before {where}"
    deadline = time.monotonic() + 15
    while _orphaned_prefect_servers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _orphaned_prefect_servers() == [], "the killed run's temporary Prefect server outlived it"

    again = subprocess.run(_night(home, config), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    left = [p for pattern in DEBRIS_PATTERNS for p in home.rglob(pattern) if "feedback" not in p.parts]
    assert left == [], f"half-written files left after {where}: {left}"
    db = open_database(Settings.from_env(home).database_url)
    with db.session() as s:
        assert s.scalars(sa.select(Run.status).where(Run.status == "running")).all() == []
        assert s.get(Run, RUN_ID).status == "completed"  # type: ignore[union-attr]
        assert s.scalar(sa.select(sa.func.count()).select_from(Draft).where(Draft.status == "generated")) == 0
        versions = s.scalars(sa.select(ModelVersion.name).where(ModelVersion.run_id == RUN_ID)).all()
    assert len(versions) == 1, f"run {RUN_ID} registered {versions}"
    got = _drafts(home)
    assert got.keys() == expected.keys()  # every prompt x sample exactly once
    assert got == expected, f"the drafts after a kill {where} differ from an uninterrupted night's"


def test_two_runs_at_once_on_one_home_the_second_is_refused_and_the_first_finishes(
    uninterrupted: tuple[dict[tuple[int, int], str], Path, Path], tmp_path: Path
) -> None:
    _, config, _ = uninterrupted
    home = tmp_path / "home"
    first = subprocess.Popen(_night(home, config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = home / ".draftflow.lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(
        [*_night(home, config)[:-2], "--run-id", "night-2"], capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 1 and second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    assert f"nightly run {RUN_ID} (pid {first.pid} on " in second.stderr
    assert first.wait(timeout=600) == 0
    with open_database(Settings.from_env(home).database_url).session() as s:
        assert s.get(Run, "night-2") is None  # refused before it recorded anything
        assert s.get(Run, RUN_ID).status == "completed"  # type: ignore[union-attr]


def test_a_prefect_server_killed_and_restarted_during_fine_tune_leaves_the_gpu_slot_free(
    settings: Settings, corpus_dir: Path, tmp_path: Path
) -> None:
    """`draftflow serve`, a fine-tune on the gpu pool holding the `gpu` slot, the server killed -9
    and started again (`draftflow serve`) while it trains: the run finishes, registers one version,
    and the slot is free afterwards (the server kept the lease on disk)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.test_deployments import _cli, _free_port, _logs

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"DRAFTFLOW_HOME": str(settings.home), "PREFECT_HOME": str(tmp_path / "prefect"), "HF_HUB_OFFLINE": "1"}
    for args in (["ingest", str(corpus_dir)], ["clean"], ["tokenize", "--vocab-size", "320", "--block-size", "32"]):
        assert _cli(*args, env=env).returncode == 0
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    assert _cli("serve", "--port", str(port), env=env).returncode == 0
    try:
        training = {"n_layer": 1, "n_embd": 32, "n_head": 2, "batch_size": 4, "max_steps": 1_000_000}
        training |= {"max_minutes": 1.5, "checkpoint_interval": 200, "eval_interval": 200}
        job = {"base_model": "scratch", "home": str(settings.home), "training": training}
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            started = run_deployment("draftflow-finetune/finetune-gpu", parameters={"params": job}, timeout=0)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not (
                client.read_global_concurrency_limit_by_name("tag:gpu").active_slots == 1
                and _has(settings.home / "checkpoints" / str(started.id), "step-*")
            ):
                time.sleep(0.5)
            assert client.read_global_concurrency_limit_by_name("tag:gpu").active_slots == 1, _logs(settings)

        server = int((settings.home / "serve" / "server.pid").read_text())
        os.killpg(server, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{server}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        restarted = _cli("serve", "--port", str(port), env=env)  # the workers kept running: only the server starts
        assert restarted.returncode == 0, restarted.stderr[-2000:]

        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            deadline = time.monotonic() + 400
            run = client.read_flow_run(started.id)
            while not (run.state and run.state.is_final()) and time.monotonic() < deadline:
                time.sleep(2)
                run = client.read_flow_run(started.id)
            assert run.state is not None and run.state.is_completed(), (run.state, _logs(settings))
            assert client.read_global_concurrency_limit_by_name("tag:gpu").active_slots == 0
        with open_database(settings.database_url).session() as s:
            assert len(s.scalars(sa.select(ModelVersion).where(ModelVersion.run_id == str(started.id))).all()) == 1
            assert s.get(Run, str(started.id)).status == "completed"  # type: ignore[union-attr]
    finally:
        assert _cli("stop", env=env, timeout=120).returncode == 0


def test_a_worker_killed_during_a_night_takes_its_flow_run_down_and_nothing_stays_held(
    settings: Settings, corpus_dir: Path, prompts_file: Path, tmp_path: Path
) -> None:
    """`kill -9` of the real `prefect worker` while its night trains: the flow-run process ends (it
    does not go on writing, orphaned), Prefect shows the run Crashed, our run is not left `running`,
    and the home's lock and the writer slot are free for the next night."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.test_deployments import _cli, _free_port, _logs

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"DRAFTFLOW_HOME": str(settings.home), "PREFECT_HOME": str(tmp_path / "prefect"), "HF_HUB_OFFLINE": "1"}
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    assert _cli("serve", "--port", str(port), env=env).returncode == 0
    try:
        params = nightly_params(str(corpus_dir), str(prompts_file), str(settings.home)).model_dump(mode="json")
        params["training"].update(max_steps=1_000_000, max_minutes=3, checkpoint_interval=50)
        worker = int((settings.home / "serve" / "worker-default.pid").read_text())
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            night = run_deployment("draftflow-nightly/nightly", parameters={"params": params}, timeout=0)
            deadline = time.monotonic() + 240
            while not _has(settings.home / "checkpoints" / str(night.id), "step-*") and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _flow_run_processes(night.id), _logs(settings)
            os.kill(worker, signal.SIGKILL)  # the worker alone; its flow-run process is left behind
            deadline = time.monotonic() + 60
            while _flow_run_processes(night.id) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _flow_run_processes(night.id) == [], "the flow-run process outlived its worker"
            deadline = time.monotonic() + 60
            state = client.read_flow_run(night.id).state
            while not (state and state.is_final()) and time.monotonic() < deadline:
                time.sleep(1)
                state = client.read_flow_run(night.id).state
            assert state is not None and state.is_crashed(), state
            assert client.read_global_concurrency_limit_by_name("draftflow-writer").active_slots == 0
        with open_database(settings.database_url).session() as s:
            assert s.get(Run, str(night.id)).status in {"failed", "crashed"}  # type: ignore[union-attr]
        from storage.home_lock import home_lock

        with home_lock(settings.home, "the next night"):  # free: nobody holds the home
            pass
    finally:
        assert _cli("stop", env=env, timeout=120).returncode == 0


def _flow_run_processes(flow_run_id: object) -> list[int]:
    """The live processes a worker started for this flow run (their environment names it)."""
    from storage.processes import start_ticks

    mark = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and mark in Path(f"/proc/{entry}/environ").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return [pid for pid in found if start_ticks(pid) is not None]
