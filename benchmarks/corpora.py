"""Corpora of different shapes built from real text this machine carries, for `bench_corpora`.

- `sayings`: short items as JSONL: the quotations of the fortune databases (Debian's `fortunes`
  package) on wisdom, platitudes, people and science, one per line.
- `verse`: a folder of poems as plain text: the fortune database of songs and poems, one per file.
- `dialogue`: a folder of scripts: the "Q:"/"A:" riddles and every fortune written as a dialogue
  (court transcripts, "Kirk: ... Spock: ..."), eight exchanges to a file, lines opening with the speaker.
- `reference`: a folder of HTML reference pages: Sphinx (a dev dependency) builds the library
  reference of stdlib modules with autodoc, as a project's documentation site would be.
- `changelogs`: the Debian changelogs of the installed packages (`/usr/share/doc/*/changelog.Debian.gz`),
  gzip-compressed text.
Each folder also holds a binary file, so that "every bad file is a row" is checked too.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
MODULES = (
    "textwrap",
    "queue",
    "json",
    "fractions",
    "shlex",
    "heapq",
    "bisect",
    "string",
    "csv",
    "difflib",
    "argparse",
    "logging",
    "pathlib",
    "shutil",
    "tempfile",
    "zipfile",
    "calendar",
    "decimal",
    "statistics",
    "random",
    "itertools",
    "functools",
    "collections",
    "contextlib",
    "dataclasses",
    "enum",
    "fnmatch",
    "glob",
    "gzip",
    "hashlib",
)


def fortunes(name: str) -> list[str]:
    """The fortunes of one database, separated by lines of '%'."""
    text = (FORTUNES / name).read_text(encoding="utf-8", errors="replace")
    return [f.strip("\n") for f in re.split(r"^%$", text, flags=re.M) if f.strip()]


def available() -> str | None:
    """Why the corpora cannot be built here, or None."""
    if not (FORTUNES / "wisdom").is_file():
        return "the fortune databases are missing: apt-get install fortunes"
    return None


def _bad_file(folder: Path) -> None:
    (folder / "broken.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)


def sayings(root: Path) -> Path:
    folder = root / "sayings"
    folder.mkdir(parents=True)
    items = [f for db in ("wisdom", "platitudes", "people", "science") for f in fortunes(db) if len(f.split()) <= 60]
    with (folder / "sayings.jsonl").open("w") as out:
        for text in items:
            out.write(json.dumps({"text": text}) + "\n")
    _bad_file(folder)
    return folder


def verse(root: Path) -> Path:
    folder = root / "verse"
    folder.mkdir(parents=True)
    for i, poem in enumerate(fortunes("songs-poems")):
        (folder / f"poem{i:04d}.txt").write_text(poem + "\n")
    _bad_file(folder)
    return folder


def dialogue(root: Path) -> Path:
    folder = root / "dialogue"
    folder.mkdir(parents=True)
    exchanges = [f for f in fortunes("riddles") if f.lstrip().startswith("Q:") and "\nA:" in f]
    for database in sorted(p.name for p in FORTUNES.iterdir() if p.is_file() and not p.suffix):
        if database not in ("riddles", "art", "ascii-art"):
            exchanges += [f for f in fortunes(database) if _is_dialogue(f)]
    for i in range(0, len(exchanges), 8):
        (folder / f"script{i // 8:03d}.txt").write_text("\n\n".join(exchanges[i : i + 8]) + "\n")
    _bad_file(folder)
    return folder


_CUE = re.compile(r"^\s*[A-Z][A-Za-z .'\-]{0,24}:\s+\S")


def _is_dialogue(text: str) -> bool:
    """A fortune written as a dialogue: three or more lines, and two in five, open with "Speaker: "."""
    lines = [line for line in text.splitlines() if line.strip()]
    cues = sum(bool(_CUE.match(line)) for line in lines)
    return cues >= 3 and cues >= 0.4 * len(lines)


def reference(root: Path) -> Path:
    from sphinx.cmd.build import build_main

    src, folder = root / "reference-src", root / "reference"
    src.mkdir(parents=True)
    (src / "conf.py").write_text("extensions = ['sphinx.ext.autodoc']\nhtml_theme = 'classic'\n")
    for name in MODULES:
        (src / f"{name}.rst").write_text(f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n   :members:\n")
    pages = "\n".join(f"   {name}" for name in MODULES)
    (src / "index.rst").write_text(f"Library reference\n=================\n\n.. toctree::\n\n{pages}\n")
    # -Q: the stdlib docstrings are not all valid reST; Sphinx still writes every page.
    if build_main(["-Q", "-b", "html", str(src), str(root / "reference-html")]) != 0:
        raise RuntimeError(f"sphinx-build failed on {src}")
    folder.mkdir()
    for name in MODULES:
        shutil.copy(root / "reference-html" / f"{name}.html", folder / f"{name}.html")
    _bad_file(folder)
    return folder


def changelogs(root: Path) -> Path:
    folder = root / "changelogs"
    folder.mkdir(parents=True)
    for log in sorted(Path("/usr/share/doc").glob("*/changelog.Debian.gz"))[:300]:
        with gzip.open(log, "rb") as handle:
            head = handle.read(200_000)  # the newest entries; old ones go back decades
        (folder / f"{log.parent.name}.txt.gz").write_bytes(gzip.compress(head))
    _bad_file(folder)
    return folder


BUILDERS = {"sayings": sayings, "verse": verse, "dialogue": dialogue, "reference": reference, "changelogs": changelogs}
