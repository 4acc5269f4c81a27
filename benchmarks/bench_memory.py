"""Peak memory of ingest + clean + tokenize on the default corpus vs a 10x larger one.

The larger corpus is the default repeated 10 times with changes, in two variants:
- "edited": like a nightly re-crawl, each copy replaces one word in every document of 60+ words
  (a near duplicate) and repeats shorter ones as they are (an exact duplicate);
- "all-changed": every document of every copy loses a word and gains a marker, so short documents
  stop being near duplicates and the kept set grows ~8x (the dedup index must grow with it).
A third pair is the default corpus plus a single text file on one line (no newline at all), of 1 MB
and of 100 MB: ingest cuts it into parts of `max_chars` before anything scores it, and every writer
and reader holds a bounded number of bytes, so memory must not follow the file.
Each run is a fresh process; peak RSS comes from getrusage.
Run: .venv/bin/python -m benchmarks.bench_memory [edited|all-changed|one-line]
     (target: peak RSS grows by at most 1.25x)
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import resource, sys, json
from benchmarks.common import fresh_settings, prepared_corpus
from storage.refs import BaseModelSpec
from tasks.tokenize.stage import TokenizeParams, prepare_tokenizer, tokenize_corpus
settings = fresh_settings("memory")
raw, clean = prepared_corpus(settings, sys.argv[1:])
params = TokenizeParams()
tokens = tokenize_corpus(clean, prepare_tokenizer(clean, BaseModelSpec(kind="scratch"), settings, params),
                         settings, params)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"raw": raw.rows, "kept": clean.rows, "tokens": tokens.tokens, "peak_mb": peak_mb}))
"""


def write_repeated_corpus(folder: Path, copies: int, variant: str) -> Path:
    """The default corpus `copies` times, each copy changed a little, as JSONL files."""
    from benchmarks.common import fresh_settings
    from storage.parquet_store import iter_batches
    from tasks.ingest.stage import ingest_corpus

    settings = fresh_settings("memory-src")
    ingest_corpus(["python-stdlib-docs"], settings)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for copy in range(copies):
        with (folder / f"copy{copy:02d}.jsonl").open("w") as out:
            for batch in iter_batches(settings.raw_dir, columns=["text", "title"]):
                for row in batch.to_pylist():
                    words = row["text"].split(" ")
                    marker = ""
                    if copy and variant == "edited" and len(words) >= 60:
                        words[rng.randrange(len(words))] = f"revised{copy}"
                    elif copy and variant == "all-changed" and len(words) > 3:
                        del words[rng.randrange(len(words))]
                        marker = f" (revision {copy})"
                    text = " ".join(words) + marker
                    out.write(json.dumps({"text": text, "title": row["title"]}) + "\n")
    return folder


def write_one_line_file(folder: Path, megabytes: int) -> Path:
    """One text file of `megabytes` MB and no newline: the default corpus's words, shuffled into sentences."""
    from benchmarks.common import fresh_settings
    from storage.parquet_store import iter_batches
    from tasks.ingest.stage import ingest_corpus

    settings = fresh_settings("memory-src")
    ingest_corpus(["python-stdlib-docs"], settings)
    words = [
        w
        for b in iter_batches(settings.raw_dir, columns=["text"])
        for t in b.column("text").to_pylist()
        for w in t.split()
    ]
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "one-line.txt").open("w") as out:
        written = 0
        while written < megabytes * 1_000_000:
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(8, 24))) + ". "
            written += out.write(sentence.capitalize())
    return folder


def run(sources: list[str]) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", CHILD, *sources], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(variants: list[str]) -> None:
    from benchmarks.common import Targets

    targets = Targets()
    base = run(["python-stdlib-docs"])
    print(
        f"default corpus:      {base['raw']:>6} documents ingested, {base['kept']:>5} kept, "
        f"{base['tokens']:>8} tokens, peak RSS {base['peak_mb']:.0f} MB"
    )
    for variant in variants or ("edited", "all-changed", "one-line"):
        folder = Path(tempfile.mkdtemp(prefix=f"draftflow-bench-{variant}-")) / "corpus"
        if variant == "one-line":
            # 1 MB is a part or two of `max_chars`, below every buffer; 100 MB fills them all.
            peaks = {}
            for megabytes in (1, 100):
                huge_dir = write_one_line_file(folder.with_name(f"{megabytes}mb"), megabytes)
                big = run(["python-stdlib-docs", f"one-line={huge_dir}"])
                peaks[megabytes] = big["peak_mb"]
                print(
                    f"+ one {megabytes:>3} MB line:  {big['raw']:>6} documents ingested, {big['kept']:>5} kept, "
                    f"{big['tokens']:>8} tokens, peak RSS {big['peak_mb']:.0f} MB "
                    f"({big['peak_mb'] / base['peak_mb']:.2f}x the default corpus)"
                )
            targets.check("peak RSS, default + one 100 MB line / default", peaks[100] / base["peak_mb"], "<=", 1.25)
            continue
        big_dir = write_repeated_corpus(folder, 10, variant)
        size_mb = sum(p.stat().st_size for p in big_dir.iterdir()) / 1e6
        big = run([f"python-stdlib-docs={big_dir}"])  # same source name: the same thresholds apply
        print(
            f"10x {variant + ':':<16} {big['raw']:>6} documents ingested ({size_mb:.1f} MB of JSONL), "
            f"{big['kept']:>5} kept, {big['tokens']:>8} tokens, peak RSS {big['peak_mb']:.0f} MB"
        )
        targets.check(f"peak RSS, 10x {variant} / default corpus", big["peak_mb"] / base["peak_mb"], "<=", 1.25)
    targets.finish()


if __name__ == "__main__":
    main(sys.argv[1:])
