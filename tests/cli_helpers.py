"""Run the real `draftflow` entry point in-process and capture what a user would see."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from flows.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    argv, sys.argv = sys.argv, ["draftflow", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def kill_when(command: list[str], ready: Callable[[], bool], seconds: float = 240) -> bool:
    """Start `command` and `kill -9` it as soon as `ready()` holds (or it ended, or time ran out);
    returns whether `ready()` held: the fault was injected where the test wanted it."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + seconds
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    held = ready()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return held
