"""Tokenize stage end to end (Parquet -> encode_batch -> pack -> Parquet) vs the bare encode loops.

Every contender encodes the same texts in batches of ENCODE_BATCH documents, the stage's own batch
size; the bare loops have the texts in memory already (the stage reads them from Parquet).
Run: .venv/bin/python -m benchmarks.bench_tokenize   (target: the stage >= 0.9x the bare encode_batch loop)
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import Targets, fresh_settings, prepared_corpus, seconds
from storage.parquet_store import iter_batches
from storage.refs import BaseModelSpec
from tasks.models import load_tokenizer
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.params import ENCODE_BATCH, TokenizeParams
from tasks.tokenize.stage import tokenize_corpus

RUNS = 7


def main() -> None:
    settings = fresh_settings("tokenize")
    _, clean = prepared_corpus(settings)
    params = TokenizeParams()
    tok = prepare_tokenizer(clean, BaseModelSpec(kind="scratch"), settings, params)
    backend = load_tokenizer(tok.path).backend_tokenizer
    texts = [t for b in iter_batches(Path(clean.path), columns=["text"]) for t in b.column("text").to_pylist()]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6

    def bare_batch() -> None:
        for i in range(0, len(texts), ENCODE_BATCH):
            backend.encode_batch(texts[i : i + ENCODE_BATCH], add_special_tokens=False)

    def bare_batch_fast() -> None:
        for i in range(0, len(texts), ENCODE_BATCH):
            backend.encode_batch_fast(texts[i : i + ENCODE_BATCH], add_special_tokens=False)

    def one_at_a_time() -> None:
        for text in texts:
            backend.encode(text, add_special_tokens=False)

    def stage() -> None:
        tokenize_corpus(clean, tok, settings, params)

    stage()  # warm-up: file cache, thread pool
    contenders = {
        "bare encode_batch loop (texts in memory)": bare_batch,
        "bare encode_batch_fast loop (no offsets)": bare_batch_fast,
        "one-document-at-a-time encode loop": one_at_a_time,
        "tokenize stage end to end": stage,
    }
    # Interleaved rounds, best of each: background noise hits every contender alike.
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(RUNS):
        for name, fn in contenders.items():
            times[name].append(seconds(fn))
    best = {name: min(values) for name, values in times.items()}
    print(
        f"corpus: {len(texts)} documents, {megabytes:.2f} MB, vocab {tok.vocab_size}, batches of {ENCODE_BATCH}, "
        f"best of {RUNS}"
    )
    for name, value in best.items():
        print(f"  {name:<45} {value:6.3f} s  {megabytes / value:6.2f} MB/s")
    stage_s = best["tokenize stage end to end"]
    targets = Targets()
    targets.check(
        "stage / bare encode_batch loop (throughput)",
        best["bare encode_batch loop (texts in memory)"] / stage_s,
        ">=",
        0.9,
    )
    print(f"  stage / bare encode_batch_fast loop: {best['bare encode_batch_fast loop (no offsets)'] / stage_s:.2f}x")
    print(f"  stage / one-at-a-time encode loop: {best['one-document-at-a-time encode loop'] / stage_s:.2f}x")
    targets.finish()


if __name__ == "__main__":
    main()
