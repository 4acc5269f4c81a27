"""The README's commands work as written: every ```bash block runs, in order, in a fresh data home.

A block that needs a server or a GPU (make serve, the web desk, torchrun) is marked just above its
fence with `<!-- not run by tests/test_readme.py: REASON -->`, and the reason names the test that
runs it instead. `draftflow` is called as a new user would after `source .venv/bin/activate`: the
project's environment is first on PATH. Draft ids in the examples are those `review claim` printed
on a fresh queue ("claimed draft 1"); where this queue hands out another draft, the test follows the
id the claim printed, as a user would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"<!-- not run by tests/test_readme\.py: (?P<reason>.+?) -->")
CLAIMED = re.compile(r"claimed draft (\d+)")
ID_COMMANDS = re.compile(r"(draftflow review (?:show|heartbeat|edit|approve|reject|comment|release|history) )(\d+)")
PASSWORD = "correct horse battery staple"


@dataclass
class Block:
    line: int  # where the fence is, for messages
    commands: list[str]
    skip: str | None


def readme_blocks() -> list[Block]:
    lines = (REPO / "README.md").read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            marker = SKIP.search(lines[i - 1]) if i else None
            start, body = i, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append(Block(start + 1, split_commands(body), marker.group("reason") if marker else None))
        i += 1
    return blocks


def split_commands(body: list[str]) -> list[str]:
    """One entry per shell command: backslash continuations joined, a heredoc kept with its command."""
    commands, i = [], 0
    while i < len(body):
        command = body[i]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + body[i].strip()
        heredoc = re.search(r"<<'?(\w+)'?", command)
        if heredoc:
            end = heredoc.group(1)
            while body[i].strip() != end:
                i += 1
                command += "\n" + body[i]
        if command.strip() and not command.strip().startswith("#"):
            commands.append(command)
        i += 1
    return commands


def test_every_block_runs_or_names_the_test_that_runs_it() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 5
    for block in blocks:
        if block.skip:
            named = re.findall(r"tests/test_\w+\.py", block.skip)
            assert named and all((REPO / name).is_file() for name in named), (block.line, block.skip)


@pytest.mark.slow
def test_the_readme_commands_work_as_written(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(Path(sys.prefix))  # `source .venv/bin/activate` as in the repository
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "DRAFTFLOW_"))}
    env |= {
        "DRAFTFLOW_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    }
    ids: dict[str, str] = {}  # the README's draft id -> the id this queue handed out
    ran = 0
    for block in readme_blocks():
        if block.skip:
            continue
        for command in block.commands:
            command = ID_COMMANDS.sub(lambda m: m.group(1) + ids.get(m.group(2), m.group(2)), command)
            done = subprocess.run(
                ["bash", "-ec", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                input=f"{PASSWORD}\n{PASSWORD}\n",
                timeout=600,
                start_new_session=True,
            )
            assert done.returncode == 0, f"README line {block.line}: `{command}` failed:\n{done.stderr[-3000:]}"
            assert "Traceback" not in done.stderr, (command, done.stderr[-3000:])
            if " review claim" in command:
                wanted, got = CLAIMED.search(command), CLAIMED.search(done.stdout)
                assert got, f"`{command}` claimed nothing: {done.stdout}"
                if wanted:
                    ids[wanted.group(1)] = got.group(1)
            ran += 1
    assert ran >= 20
    assert (workdir / "approved.parquet").is_file()
