"""Tokenize stage end to end (Parquet -> encode_batch -> pack -> Parquet) vs the bare encode loops.

Run: .venv/bin/python -m benchmarks.bench_tokenize
Prints MB/s of each and the ratios; the stage should reach >= 0.9 of the bare encode_batch loop.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import best_of, fresh_settings, prepared_corpus
from storage.refs import BaseModelSpec
from tasks.models import load_tokenizer
from tasks.tokenize.bpe import prepare_tokenizer
from tasks.tokenize.params import TokenizeParams
from tasks.tokenize.stage import tokenize_corpus

RUNS = 7
BATCH = 512


def main() -> None:
    settings = fresh_settings("tokenize")
    _, clean = prepared_corpus(settings)
    params = TokenizeParams()
    tok = prepare_tokenizer(clean, BaseModelSpec(kind="scratch"), settings, params)
    backend = load_tokenizer(tok.path).backend_tokenizer
    from storage.parquet_store import iter_batches

    texts = [t for b in iter_batches(Path(clean.path), columns=["text"]) for t in b.column("text").to_pylist()]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6

    def bare_batch() -> None:
        for i in range(0, len(texts), BATCH):
            backend.encode_batch(texts[i:i + BATCH], add_special_tokens=False)

    def bare_batch_fast() -> None:
        for i in range(0, len(texts), BATCH):
            backend.encode_batch_fast(texts[i:i + BATCH], add_special_tokens=False)

    def one_at_a_time() -> None:
        for text in texts:
            backend.encode(text, add_special_tokens=False)

    def stage() -> None:
        tokenize_corpus(clean, tok, settings, params)

    stage()  # warm-up: file cache, thread pool
    contenders = {"bare encode_batch loop (texts in memory)": bare_batch,
                  "bare encode_batch_fast loop (no offsets)": bare_batch_fast,
                  "one-document-at-a-time encode loop": one_at_a_time,
                  "tokenize stage end to end": stage}
    # Interleaved rounds, best of each: background noise hits all three alike.
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(RUNS):
        for name, fn in contenders.items():
            times[name].append(best_of(1, fn))
    results = {name: min(values) for name, values in times.items()}
    print(f"corpus: {len(texts)} documents, {megabytes:.2f} MB, vocab {tok.vocab_size}, best of {RUNS}")
    for name, seconds in results.items():
        print(f"  {name:<45} {seconds:6.3f} s  {megabytes / seconds:6.2f} MB/s")
    stage_s = results["tokenize stage end to end"]
    print(f"ratio stage / bare encode_batch: {results['bare encode_batch loop (texts in memory)'] / stage_s:.2f}"
          "  (throughput; >= 0.9 wanted)")
    print(f"ratio stage / bare encode_batch_fast: "
          f"{results['bare encode_batch_fast loop (no offsets)'] / stage_s:.2f}")
    print(f"ratio stage / one-at-a-time encode: {results['one-document-at-a-time encode loop'] / stage_s:.2f}")


if __name__ == "__main__":
    main()
