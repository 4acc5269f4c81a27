"""What the machine refuses is one line, and leaves nothing half-written: a full disk (a real tmpfs),
a read-only data home (the tmpfs remounted read-only), a database server that is not there, and an
export pointed at a folder. Database passwords are never printed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

DEBRIS = (".staging", ".partial", ".tmp", ".tokenizer-")


def _draftflow(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("draftflow")
    environment = {**os.environ, "DRAFTFLOW_HOME": str(home), **(env or {})}
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=environment, timeout=600)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip() and "| INFO" not in line]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a disk that fills up for real (ENOSPC from the kernel)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0 and os.geteuid() != 0:
        pytest.skip(f"mounting a tmpfs needs root (CAP_SYS_ADMIN), and this user is not: {made.stderr.decode()}")
    assert made.returncode == 0, f"root could not mount a tmpfs: {made.stderr.decode()}"  # CI runs as root
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _debris(home: Path) -> list[str]:
    return [str(p) for p in home.rglob("*") if any(mark in p.name for mark in DEBRIS)]


@pytest.mark.slow
@pytest.mark.faults
def test_a_full_disk_is_one_line_and_leaves_no_debris(small_disk: Path) -> None:
    home = small_disk / "home"
    failed = None
    for stage in (["ingest", "python-stdlib-docs"], ["clean"], ["tokenize"], ["finetune", "--max-steps", "2"]):
        done = _draftflow(home, *stage)
        if done.returncode != 0:
            failed = _one_error_line(done)
            break
    assert failed is not None, "2 MB held the whole pipeline: the disk never filled"
    assert failed.startswith("error: the disk is full") and "DRAFTFLOW_HOME" in failed
    assert _debris(home) == []


@pytest.mark.slow
@pytest.mark.faults
def test_a_read_only_home_is_one_line(small_disk: Path, corpus_dir: Path) -> None:
    home = small_disk / "home"
    assert _draftflow(home, "ingest", str(corpus_dir)).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    # SQLite in WAL mode needs to create its shared-memory file even to read: one line, if it cannot
    status = _draftflow(home, "status")
    if status.returncode != 0:
        assert _one_error_line(status).startswith("error: cannot write the database")
    failed = _one_error_line(_draftflow(home, "clean"))
    assert "Read-only file system" in failed and "DRAFTFLOW_HOME" in failed


def test_a_database_server_that_is_not_there_is_one_line_without_the_password(tmp_path: Path) -> None:
    secret = uuid.uuid4().hex
    url = f"postgresql+psycopg://ann:{secret}@127.0.0.1:1/drafts"
    done = _draftflow(tmp_path / "home", "status", env={"DRAFTFLOW_DATABASE_URL": url})
    assert _one_error_line(done).startswith("error: cannot reach the database")
    assert secret not in done.stderr + done.stdout


def test_a_bad_database_url_never_prints_its_password(tmp_path: Path) -> None:
    from storage.errors import hide_password

    secret = uuid.uuid4().hex
    assert secret not in hide_password(f"postgresql+psycopg://ann:{secret}@db.example:5432/drafts")
    assert secret not in hide_password(f"not a url://ann:{secret}@db")
    done = _draftflow(tmp_path / "home", "status", env={"DRAFTFLOW_DATABASE_URL": f"nope://ann:{secret}@x"})
    assert done.returncode == 1 and secret not in done.stderr + done.stdout


def test_an_export_to_a_folder_is_one_line_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "exports"
    target.mkdir()
    done = run_cli(capsys, "review", "export", "--out", str(target))
    assert done.code == 1 and done.err.count("\n") == 1 and "is a folder" in done.err
    assert list(tmp_path.glob("*partial*")) == [] and list(target.iterdir()) == []
