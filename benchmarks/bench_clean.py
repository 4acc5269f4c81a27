"""Clean stage throughput: MB per CPU-second overall and per step, all filters and MinHash on.

Run: .venv/bin/python -m benchmarks.bench_clean
"""

from __future__ import annotations

import time

from benchmarks.common import fresh_settings
from tasks.clean.params import CleanParams
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus


def main() -> None:
    settings = fresh_settings("clean")
    raw = ingest_corpus(["python-stdlib-docs"], settings)
    clean_corpus(raw, settings)  # warm-up: language model load, imports
    cpu, wall = time.process_time(), time.perf_counter()
    ref = clean_corpus(raw, settings, CleanParams())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    megabytes = ref.report[0]["megabytes"]
    print(f"clean stage: {raw.rows} documents, {megabytes:.2f} MB in, {ref.rows} kept")
    print(f"  whole stage: {cpu:.2f} CPU-s ({wall:.2f} s wall) -> {megabytes / cpu:.2f} MB per CPU-second")
    print(f"  {'step':<12} {'docs in':>8} {'MB in':>7} {'seconds':>8} {'MB/s':>7} {'dropped':>8}")
    for step in ref.report:
        rate = step["megabytes"] / step["seconds"] if step["seconds"] else float("inf")
        print(f"  {step['step']:<12} {step['documents']:>8} {step['megabytes']:>7.2f} {step['seconds']:>8.2f} "
              f"{rate:>7.2f} {step['dropped']:>8}")
    print("  (per-step seconds are wall time inside the step; the stage is single-threaded, so CPU ~ wall)")


if __name__ == "__main__":
    main()
