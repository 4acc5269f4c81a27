"""A new user's first night on corpora nobody here wrote: `draftflow run --corpus PATH`, default settings.

Builds five corpora of different shapes from real text this machine carries (`benchmarks/corpora.py`:
sayings as JSONL, verse, dialogue scripts, Sphinx reference pages as HTML, Debian changelogs as
gzip), each with one binary file in it, and runs the whole night on each in a fresh data home, as a
separate process, the way a user would. For each it reports what the run summary says (documents
ingested, kept and rejected, the profile chosen and why, the validation split, drafts queued, where
the prompts came from, decimation warnings) and checks it against the datasets on disk.

Baseline, in the same run: the same corpus cleaned with the published web rules alone
(`--profile web`, what every source got before profiles), so the ratio is what the profiles keep.

Targets (exit 1 on a miss):
- every corpus completes end to end (exit 0) and drafts reach the queue;
- kept share of the distinct documents >= 70% for the short-form, verse and dialogue corpora;
- 0 silent drops: ingested = kept + rejected in the summary, raw + ingest rejects = ingested and
  clean + clean rejects = raw on disk, every file of the folder is a row, the binary one a rejected row.

Run: .venv/bin/python -m benchmarks.bench_corpora [NAME ...]   (needs `apt-get install fortunes`)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds

from benchmarks import corpora
from benchmarks.common import Targets, fresh_settings
from storage.errors import DraftflowError
from storage.settings import Settings
from tasks.clean.dedup import simplify_text
from tasks.clean.params import CleanParams
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus

KEEP_TARGET = {"sayings": 0.7, "verse": 0.7, "dialogue": 0.7}  # short items and dialogue/verse
TRAIN_MINUTES = "0.5"


def night(folder: Path, home: Path) -> tuple[int, dict, float]:
    """(exit code, run summary, seconds) of `draftflow run --corpus folder` in a fresh home."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "flows.cli", "--home", str(home), "run", "--corpus", str(folder)]
    command += ["--max-train-minutes", TRAIN_MINUTES, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"  run failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-3:]}")
        return done.returncode, {}, seconds
    return 0, json.loads(done.stdout[done.stdout.index("{") :]), seconds


def web_baseline(folder: Path) -> int:
    """Documents of the corpus the web rules alone keep."""
    settings = fresh_settings("corpora-web")
    raw = ingest_corpus([str(folder)], settings)
    try:
        return clean_corpus(raw, settings, CleanParams(profile="web")).rows
    except DraftflowError:  # nothing left
        return 0


def rows(path: Path, columns: list[str]) -> list[dict]:
    if not path.exists() or not any(path.glob("*.parquet")):  # a stage that rejected nothing
        return []
    return ds.dataset(path).to_table(columns=columns).to_pylist()


def no_silent_drops(folder: Path, home: Path, summary: dict) -> list[str]:
    """Every way a document or a file could vanish between the folder and the clean corpus."""
    settings = Settings.from_env(home)
    raw = rows(Path(str(settings.raw_dir)), ["file", "text"])
    clean = rows(Path(str(settings.clean_dir)), ["doc_id"])
    ingest_rejects = rows(Path(str(settings.rejected_dir("ingest"))), ["file", "reason"])
    clean_rejects = rows(Path(str(settings.rejected_dir("clean"))), ["doc_id"])
    problems = []
    ingested, kept, rejected = (summary[k] for k in ("documents_ingested", "documents_kept", "documents_rejected"))
    if ingested != kept + rejected:
        problems.append(f"summary: {ingested} ingested != {kept} kept + {rejected} rejected")
    if len(raw) + len(ingest_rejects) != ingested:
        problems.append(f"disk: {len(raw)} raw + {len(ingest_rejects)} ingest rejects != {ingested} ingested")
    if len(clean) + len(clean_rejects) != len(raw):
        problems.append(f"disk: {len(clean)} clean + {len(clean_rejects)} clean rejects != {len(raw)} raw")
    if len(clean) != kept:
        problems.append(f"disk: {len(clean)} clean rows, the summary says {kept} kept")
    seen = {Path(r["file"]).name for r in raw + ingest_rejects}
    missing = sorted(p.name for p in folder.iterdir() if p.name not in seen)
    if missing:
        problems.append(f"files with no row: {missing[:5]}")
    if not any(Path(r["file"]).name == "broken.txt" for r in ingest_rejects):
        problems.append("the binary file is not a rejected row")
    return problems


def distinct_documents(home: Path) -> int:
    """Documents after ingest whose text differs once simplified as near dedup sees it (case, digits,
    punctuation, whitespace): copies are rightly dropped, so the keep targets count the rest."""
    raw = rows(Path(str(Settings.from_env(home).raw_dir)), ["text"])
    return len({simplify_text(r["text"]) for r in raw})


def main(names: list[str]) -> None:
    why_not = corpora.available()
    if why_not:
        sys.exit(f"bench_corpora: {why_not}")
    targets = Targets()
    root = Path(tempfile.mkdtemp(prefix="draftflow-bench-corpora-"))
    table = []
    for name in names or list(corpora.BUILDERS):
        folder = corpora.BUILDERS[name](root)
        files = sum(1 for _ in folder.iterdir())
        print(f"\n{name}: {files} files in {folder}")
        baseline = web_baseline(folder)
        home = root / f"home-{name}"
        code, summary, seconds = night(folder, home)
        targets.check(f"{name}: night exit code", code, "<=", 0, "")
        if code:
            continue
        ingested, kept = summary["documents_ingested"], summary["documents_kept"]
        distinct = distinct_documents(home)
        share, share_distinct, baseline = kept / ingested, kept / max(1, distinct), baseline / ingested
        print(f"  {ingested} ingested ({distinct} distinct), {kept} kept, {summary['documents_rejected']} rejected")
        print(f"  top reasons: {dict(sorted(summary['rejected_by_reason'].items(), key=lambda kv: -kv[1])[:4])}")
        print(f"  profile: {summary['profiles'].get(name, '?')}")
        blocks = f"{summary['train_blocks']} train, {summary['val_blocks']} val blocks"
        print(f"  validation split by {summary['val_split']}: {blocks}")
        drafts = f"{summary['drafts_queued']} queued ({summary['drafts_flagged']} flagged)"
        print(f"  drafts: {drafts}, prompts: {summary['prompts']}")
        for warning in summary["warnings"]:
            print(f"  warning: {warning.splitlines()[0]}")
        ratio = f"{share / baseline:.1f}x" if baseline else "the web rules keep none"
        print(
            f"  kept {share:.0%} ({share_distinct:.0%} of distinct) vs {baseline:.0%} with the web rules alone "
            f"({ratio}); night {seconds:.0f} s"
        )
        targets.check(f"{name}: drafts queued", summary["drafts_queued"], ">=", 1, "")
        if name in KEEP_TARGET:
            targets.check(f"{name}: kept share of distinct documents", share_distinct, ">=", KEEP_TARGET[name], "")
        problems = no_silent_drops(folder, home, summary)
        for problem in problems:
            print(f"  silent drop: {problem}")
        targets.check(f"{name}: silent drops", len(problems), "<=", 0, "")
        table.append((name, files, ingested, kept, share, share_distinct, baseline, summary))
    columns = "corpus files ingested kept", "kept of distinct", "web rules alone", "profile", "validation split"
    print("\n| " + " | ".join([*columns[0].split(), *columns[1:], "drafts queued"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, files, ingested, kept, share, share_distinct, baseline, summary in table:
        profile = summary["profiles"].get(name, "?").split(" (")[0]
        split = f"{summary['val_split']} ({summary['train_blocks']}/{summary['val_blocks']})"
        print(
            f"| {name} | {files} | {ingested} | {kept} ({share:.0%}) | {share_distinct:.0%} | {baseline:.0%} | "
            f"{profile} | {split} | {summary['drafts_queued']} |"
        )
    targets.finish()


if __name__ == "__main__":
    main(sys.argv[1:])
