"""Files that must neither hang ingest nor vanish from it, and sizes that must not blow up its memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.parquet_store import iter_batches
from storage.settings import Settings
from tasks.ingest.params import IngestOptions
from tasks.ingest.stage import ingest_corpus

GOOD = "A perfectly readable document about sockets and threads, and the queues between them."


def rows(directory: Path) -> list[dict]:
    return [r for b in iter_batches(directory) for r in b.to_pylist()]


def reasons(settings: Settings) -> dict[str, str]:
    return {Path(r["uri"]).name: r["reason"] for r in rows(settings.rejected_dir("ingest"))}


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "special" / "listener.txt"
    path.parent.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    yield path
    server.close()


def test_fifos_sockets_devices_and_broken_links_are_rows_never_opened(
    settings: Settings, tmp_path: Path, unix_socket: Path
) -> None:
    src = unix_socket.parent
    (src / "good.txt").write_text(GOOD)
    os.mkfifo(src / "pipe.txt")  # opening it for reading would block forever
    (src / "null.md").symlink_to("/dev/null")
    (src / "gone.md").symlink_to(src / "nowhere.md")
    ref = ingest_corpus([str(src)], settings)  # returns: nothing was opened that could block
    assert reasons(settings) == {
        "pipe.txt": "not_a_file",
        "listener.txt": "not_a_file",
        "null.md": "not_a_file",
        "gone.md": "broken_link",
    }
    assert ref.rows == 1 and ref.stats["seen"] == 5
    details = {Path(r["uri"]).name: r["detail"] for r in rows(settings.rejected_dir("ingest"))}
    assert details["pipe.txt"].startswith("a FIFO") and details["listener.txt"].startswith("a socket")
    again = ingest_corpus([str(src)], settings)  # incremental: the rejections are carried, still not opened
    assert again.stats["files_unchanged"] == 5 and again.stats["rejected"] == 4


def test_a_symlinked_folder_is_read_once_and_a_loop_is_a_row(settings: Settings, tmp_path: Path) -> None:
    src, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    (src / "inner").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "linked.txt").write_text(GOOD + " (linked)")
    (src / "inner" / "own.txt").write_text(GOOD)
    (src / "shortcut").symlink_to(elsewhere)  # followed: its file is read
    (src / "inner" / "back").symlink_to(src)  # a loop back to the source folder
    (src / "again").symlink_to(src / "inner")  # the same folder under a second name: the real one is read
    ref = ingest_corpus([str(src)], settings)
    texts = sorted(r["text"] for r in rows(settings.raw_dir))
    assert texts == sorted([GOOD, GOOD + " (linked)"])
    assert reasons(settings) == {"back": "symlink_loop", "again": "symlink_loop"}
    assert {Path(r["uri"]).parent.name for r in rows(settings.raw_dir)} == {"inner", "shortcut"}
    assert ref.stats["seen"] == ref.rows + ref.stats["rejected"] == 4


def test_an_unreadable_folder_is_a_row(tmp_path: Path) -> None:
    """A folder the process may not read: as root, the test drops the capabilities that let root read
    any folder (setpriv), so the permission bits apply as they would for any user."""
    src = tmp_path / "corpus"
    (src / "locked").mkdir(parents=True)
    (src / "open.txt").write_text(GOOD)
    (src / "locked" / "secret.txt").write_text(GOOD + " (locked)")
    (src / "locked").chmod(0)
    home = tmp_path / "home"
    code = (
        "import json, sys; from storage.settings import Settings; from tasks.ingest.stage import ingest_corpus; "
        "ref = ingest_corpus([sys.argv[1]], Settings.from_env(sys.argv[2])); print(json.dumps(ref.stats))"
    )
    unprivileged = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*unprivileged, sys.executable, "-c", code, str(src), str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    (src / "locked").chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["documents"] == 1 and stats["rejected_unreadable"] == 1
    assert stats["seen"] == stats["documents"] + stats["rejected"]


def test_a_huge_one_line_document_is_cut_into_parts_that_add_up(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.mkdir()
    words = " ".join(f"word{i % 977}" for i in range(600_000))  # ~5 MB on one line, no newline
    (src / "book.txt").write_text(words)
    ref = ingest_corpus([str(src)], settings, IngestOptions(max_chars=1_000_000))
    parts = sorted(rows(settings.raw_dir), key=lambda r: int(r["uri"].rsplit("part", 1)[1]))
    assert ref.rows == len(parts) >= 5
    assert all(len(p["text"]) <= 1_000_000 for p in parts)
    assert "".join(p["text"] for p in parts) == words  # cut at spaces, nothing lost
    assert parts[0]["uri"].endswith("book.txt#part1")


def test_a_huge_jsonl_line_costs_only_its_line_and_a_nul_byte_costs_nothing(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "lines"
    src.mkdir()
    huge = json.dumps({"text": "x " * 200_000})  # 400 KB on one line
    (src / "items.jsonl").write_text("\n".join([json.dumps({"text": GOOD}), huge, json.dumps({"text": GOOD + "!"})]))
    (src / "rows.csv").write_text(f'text\n"{GOOD}"\n"a row with a \x00 byte"\n"{GOOD} again"\n')
    ref = ingest_corpus([str(src)], settings, IngestOptions(max_chars=50_000))
    assert reasons(settings) == {"items.jsonl#L2": "too_long"}  # the other lines and the whole CSV are read
    assert ref.rows == 5 and any("\x00" in r["text"] for r in rows(settings.raw_dir))  # clean drops the NUL
