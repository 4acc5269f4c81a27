"""Crashes and a second writer, with real processes and real signals: one writer per data home (the
lock dies with its holder, kill -9 included), and what a killed stage leaves behind (a run marked
running, drafts never queued, half-written folders) found and finished by `status` and `recover`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.db import open_database
from storage.models import Draft, Run
from storage.settings import Settings
from tests.cli_helpers import kill_when, run_cli

HOLD = """
import sys, time
from pathlib import Path
from storage.home_lock import home_lock
with home_lock(Path(sys.argv[1]), "a long night"):
    print("holding", flush=True)
    time.sleep(600)
"""


def _draftflow(settings: Settings, *args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "--home", str(settings.home), *args]


def test_a_second_writer_is_refused_until_the_holder_dies(
    capsys: pytest.CaptureFixture[str], settings: Settings, corpus_dir: Path
) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(settings.home)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        refused = run_cli(capsys, "ingest", str(corpus_dir))
        assert refused.code == 1 and refused.err.count("\n") == 1 and "Traceback" not in refused.err
        assert "another draftflow process is writing to" in refused.err
        assert f"a long night (pid {holder.pid} on " in refused.err  # names the holder
        assert run_cli(capsys, "status").code == 0  # readers are not writers
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the kernel releases the lock with the process
        holder.wait()
    assert run_cli(capsys, "ingest", str(corpus_dir)).code == 0


@pytest.mark.slow
@pytest.mark.faults
def test_a_generate_killed_mid_run_is_marked_crashed_and_its_drafts_are_queued(
    capsys: pytest.CaptureFixture[str], settings: Settings, corpus_dir: Path, tmp_path: Path
) -> None:
    for args in (["ingest", str(corpus_dir)], ["clean"], ["tokenize", "--vocab-size", "320", "--block-size", "64"]):
        assert run_cli(capsys, *args).code == 0
    assert run_cli(capsys, "finetune", "--max-steps", "3").code == 0
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"Prompt number {i} about the module" for i in range(60)))
    command = ["generate", "--prompts", str(prompts), "--batch-size", "4", "--max-new-tokens", "24"]
    db = open_database(settings.database_url)

    def some_drafts() -> bool:
        with db.session() as s:
            return (s.scalar(sa.select(sa.func.count()).select_from(Draft).where(Draft.run_id == "killed")) or 0) >= 8

    written = kill_when(_draftflow(settings, *command, "--run-id", "killed"), some_drafts)
    assert written, "generate ended before writing 8 drafts"
    with db.session() as s:
        assert s.get(Run, "killed").status == "running"  # type: ignore[union-attr]
        stranded = s.scalar(sa.select(sa.func.count()).select_from(Draft).where(Draft.status == "generated"))
    assert stranded and stranded >= 8

    shown = run_cli(capsys, "status", "--json")
    assert shown.code == 0
    with db.session() as s:
        run = s.get(Run, "killed")
        assert run is not None and run.status == "crashed" and "ended without finishing" in (run.error or "")
    recovered = run_cli(capsys, "recover")
    assert recovered.code == 0 and f"{stranded} drafts checked and queued" in recovered.out
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Draft).where(Draft.status == "generated")) == 0
    # the run resumed under its id makes only the drafts that are missing
    again = subprocess.run(_draftflow(settings, *command, "--run-id", "killed"), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    with db.session() as s:
        total = s.scalar(sa.select(sa.func.count()).select_from(Draft).where(Draft.run_id == "killed"))
        assert s.get(Run, "killed").status == "completed"  # type: ignore[union-attr]
    assert total == 60 * 2  # every prompt x sample exactly once


@pytest.mark.slow
@pytest.mark.faults
def test_a_tokenize_killed_mid_write_leaves_debris_that_recover_removes(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    for args in (["ingest", "python-stdlib-docs"], ["clean"]):
        assert run_cli(capsys, *args).code == 0
    tokens = settings.home / "tokens"

    def half_written() -> bool:
        return tokens.is_dir() and any(".staging-" in p.name or ".tokenizer-" in p.name for p in tokens.rglob(".*"))

    assert kill_when(_draftflow(settings, "tokenize"), half_written), "tokenize ended before it wrote anything"
    left = [p for p in tokens.rglob(".*") if ".staging-" in p.name or ".tokenizer-" in p.name]
    assert left
    recovered = run_cli(capsys, "recover")
    assert recovered.code == 0
    assert [p for p in tokens.rglob(".*") if ".staging-" in p.name or ".tokenizer-" in p.name] == []
    assert run_cli(capsys, "tokenize").code == 0  # and the stage runs again from a clean state
