"""Incremental ingest: a second run over unchanged sources against the first (full) run.

The sources are the embedded corpus (520 stdlib files read with `ast`) and a folder of Markdown files
(the language reference topics, one file each). The first run reads and parses every file; the second
finds every file's content hash unchanged and copies the previous snapshot's rows instead of parsing
again; a third run after one Markdown file changed re-reads that file only.
Run: .venv/bin/python -m benchmarks.bench_ingest      (target: the unchanged run <= 0.2x the first)
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

from benchmarks.common import Targets, fresh_settings, seconds
from tasks.ingest.stage import ingest_corpus

RUNS = 3


def main() -> None:
    from pydoc_data.topics import topics

    # a folder of plain files, so that one of them can be changed for the third run
    source = Path(tempfile.mkdtemp(prefix="draftflow-bench-ingest-src-")) / "topics"
    source.mkdir()
    for name, text in topics.items():
        (source / f"{name}.md").write_text(f"# {name}\n\n{text}")
    specs = ["python-stdlib-docs", f"topics={source}"]
    first, unchanged, one_changed = [], [], []
    for _ in range(RUNS):
        settings = fresh_settings("ingest")
        run = partial(ingest_corpus, specs, settings)
        first.append(seconds(run))
        unchanged.append(seconds(run))
        target = source / "assert.md"
        target.write_text(target.read_text() + "\n# changed\n")
        one_changed.append(seconds(run))
    stats = ingest_corpus(specs, fresh_settings("ingest-stats")).stats
    print(
        f"sources: {stats['files_new']} files, {stats['documents']:,} documents, {stats['rejected']} rejected "
        f"(the embedded corpus + {len(topics)} Markdown files); best of {RUNS}"
    )
    print(f"  first run (every file read):     {min(first):6.2f} s")
    print(f"  second run, nothing changed:     {min(unchanged):6.2f} s")
    print(f"  third run, one file changed:     {min(one_changed):6.2f} s")
    targets = Targets()
    targets.check("unchanged run / first run", min(unchanged) / min(first), "<=", 0.2)
    targets.check("one file changed / first run", min(one_changed) / min(first), "<=", 0.3)
    targets.finish()


if __name__ == "__main__":
    main()
