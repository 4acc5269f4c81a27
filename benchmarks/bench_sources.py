"""Sources for fact-checking: the BM25 passage index against a brute-force scan, and against the n-gram index.

On the default corpus (the embedded `python-stdlib-docs`, ingested and cleaned) and on that corpus
repeated 10 times with varied text (each copy has a tenth of its words replaced by other corpus words,
so no two copies are the same and the vocabulary stays natural):
1. Build: seconds and bytes on disk of the sources index, beside the n-gram index build on the same
   corpus (the queue stage builds both once per corpus version).  (target: sources build <= 2x n-gram)
2. Lookup: `closest(draft, 3)` per draft, p50/p95, against a brute-force scan that computes the same
   BM25 scores passage by passage from term counts prepared outside the timed region; both must rank
   the same passages first.                                         (target: index >= 10x the scan)
3. The rest of a desk panel per draft: `containing(span)` for a copied 25-word span and
   `unsupported_claims(draft, passages)`, p50/p95; loading the stored index (a desk's first page).
                                                                      (target: closest p95 <= 50 ms at 10x)
Run: .venv/bin/python -m benchmarks.bench_sources [--drafts 200]
"""

from __future__ import annotations

import argparse
import math
import random
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from benchmarks.common import Targets, fresh_settings, prepared_corpus, seconds
from storage.parquet_store import DatasetWriter, iter_batches
from tasks.review.checks import NgramIndex
from tasks.review.sources import TERM_PATTERN, SourcesIndex, unsupported_claims

_DOC_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("title", pa.string()),
        pa.field("text", pa.large_string()),
    ]
)


def repeated_corpus(clean_dir: Path, target: Path, copies: int, seed: int = 0) -> Path:
    """The corpus `copies` times, each copy with ~10% of its words replaced by other corpus words."""
    rng = random.Random(seed)
    vocabulary = sorted(
        {w for b in iter_batches(clean_dir, columns=["text"]) for t in b.column("text").to_pylist() for w in t.split()}
    )
    with DatasetWriter(target, _DOC_SCHEMA) as out:
        for copy in range(copies):
            for batch in iter_batches(clean_dir, columns=["doc_id", "source", "title", "text"]):
                for row in batch.to_pylist():
                    words = row["text"].split(" ")
                    for i in rng.sample(range(len(words)), k=len(words) // 10):
                        words[i] = rng.choice(vocabulary)
                    out.write_row({**row, "doc_id": f"{row['doc_id']}-{copy}", "text": " ".join(words)})
        out.commit({"copies": copies})
    return target


def drafts(index: SourcesIndex, n: int, seed: int = 1) -> list[tuple[str, str]]:
    """(draft, copied span): a passage with 30% of its words replaced, then 40 words of another passage;
    the span is 25 words of a third passage, as a copied span the n-gram check would find."""
    rng = random.Random(seed)
    texts = [t for t in index.passages.column("text").to_pylist() if len(t.split()) >= 40]
    vocabulary = [w for t in rng.sample(texts, 200) for w in t.split()]
    made = []
    for _ in range(n):
        words = rng.choice(texts).split()
        for i in rng.sample(range(len(words)), k=len(words) * 3 // 10):
            words[i] = rng.choice(vocabulary)
        span_words = rng.choice(texts).split()
        first = rng.randrange(0, len(span_words) - 25)
        made.append((" ".join(words + rng.choice(texts).split()[:40]), " ".join(span_words[first : first + 25])))
    return made


class BruteForce:
    """BM25 as bm25s computes it (Lucene: idf log(1 + (N - df + .5) / (df + .5)), term weight tf / (tf + k1 (1 - b
    + b len / avg len)), k1 1.5, b 0.75), passage by passage."""

    def __init__(self, index: SourcesIndex, k1: float = 1.5, b: float = 0.75) -> None:
        self.index, self.k1, self.b = index, k1, b
        titles, texts = index.passages.column("title").to_pylist(), index.passages.column("text").to_pylist()
        self.counts = []
        for title, text in zip(titles, texts, strict=True):
            ids = [
                index.vocab[w] for w in re.findall(TERM_PATTERN, f"{title or ''}\n{text}".lower()) if w in index.vocab
            ]
            self.counts.append(Counter(ids or [index.vocab[""]]))  # bm25s gives an empty passage the empty term
        self.lengths = [sum(c.values()) for c in self.counts]
        average = sum(self.lengths) / len(self.lengths)
        self.norms = [k1 * (1 - b + b * length / average) for length in self.lengths]
        df: Counter[int] = Counter()
        for counts in self.counts:
            df.update(counts.keys())
        n = len(self.counts)
        self.idf = {term: math.log(1 + (n - d + 0.5) / (d + 0.5)) for term, d in df.items()}

    def closest(self, text: str, k: int = 3) -> list[tuple[float, int]]:
        query = self.index.term_ids(text)
        scores = []
        for i, counts in enumerate(self.counts):
            score = 0.0
            for term in query:
                tf = counts.get(term)
                if tf:
                    score += self.idf[term] * tf / (tf + self.norms[i])
            scores.append((score, i))
        scores.sort(key=lambda pair: -pair[0])
        return [(score, i) for score, i in scores[:k] if score > 0]


def percentiles(fn: Callable[[str], object], inputs: list[str]) -> tuple[float, float]:
    times = []
    for value in inputs:
        started = time.perf_counter()
        fn(value)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))]


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def bench(label: str, clean_dir: Path, n_drafts: int, n_scans: int, targets: Targets) -> None:
    cache = Path(tempfile.mkdtemp(prefix="draftflow-bench-sources-index-"))
    corpus = (t for b in iter_batches(clean_dir, columns=["text"]) for t in b.column("text").to_pylist())
    megabytes = sum(len(t.encode()) for t in corpus) / 1e6
    ngram_seconds = seconds(lambda: NgramIndex.build(clean_dir))
    started = time.perf_counter()
    index = SourcesIndex.build(clean_dir)
    build_seconds = time.perf_counter() - started
    index.save(cache, "bench")
    disk = folder_bytes(cache / "bench")
    load_ms = seconds(lambda: SourcesIndex.load(cache, "bench")) * 1000
    loaded = SourcesIndex.load(cache, "bench")
    assert loaded is not None
    print(
        f"[{label}] {megabytes:.1f} MB corpus, {loaded.passages.num_rows:,} passages, {len(loaded.vocab):,} terms: "
        f"sources index built in {build_seconds:.2f} s ({disk / 1e6:.1f} MB on disk, {disk / megabytes / 1e6:.2f}x "
        f"the corpus text), loaded in {load_ms:.0f} ms; n-gram index built in {ngram_seconds:.2f} s"
    )
    targets.check(f"[{label}] sources build / n-gram build (seconds)", build_seconds / ngram_seconds, "<=", 2)

    made = drafts(loaded, n_drafts)
    texts = [draft for draft, _ in made]
    loaded.closest(texts[0])  # warm-up: first touch of the memory-mapped arrays
    closest = percentiles(lambda t: loaded.closest(t, 3), texts)
    scan = BruteForce(loaded)
    for text in texts[:n_scans]:  # the same best score (passages with equal scores may come in either order)
        ours, theirs = loaded.closest(text, 1), scan.closest(text, 1)
        assert ours and theirs and math.isclose(ours[0].score, theirs[0][0], rel_tol=1e-4), (ours, theirs)
    brute = percentiles(lambda t: scan.closest(t, 3), texts[:n_scans])
    spans = [span for _, span in made]
    containing = percentiles(loaded.containing, spans)
    found = sum(loaded.containing(span) is not None for span in spans)
    passages = {text: loaded.closest(text, 3) for text in texts}
    claims = percentiles(lambda t: unsupported_claims(t, passages[t]), texts)
    print(
        f"[{label}] closest(draft, 3) over {n_drafts} drafts: p50 {closest[0]:.2f} ms, p95 {closest[1]:.2f} ms; "
        f"brute-force scan ({n_scans} drafts): p50 {brute[0]:.1f} ms, p95 {brute[1]:.1f} ms"
    )
    print(
        f"[{label}] containing(25-word span): p50 {containing[0]:.2f} ms, p95 {containing[1]:.2f} ms "
        f"({found}/{len(spans)} found); unsupported_claims: p50 {claims[0]:.2f} ms, p95 {claims[1]:.2f} ms"
    )
    targets.check(f"[{label}] brute-force scan / BM25 index (p50)", brute[0] / closest[0], ">=", 10)
    if label == "10x":
        targets.check("[10x] closest p95", closest[1], "<=", 50, unit=" ms")
    shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drafts", type=int, default=200)
    args = parser.parse_args()
    settings = fresh_settings("sources")
    _, clean = prepared_corpus(settings)
    targets = Targets()
    bench("default", Path(clean.path), args.drafts, 50, targets)
    big = repeated_corpus(Path(clean.path), settings.home / "corpus-10x", 10)
    bench("10x", big, args.drafts, 10, targets)
    targets.finish()


if __name__ == "__main__":
    main()
