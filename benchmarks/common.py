"""Shared set-up for the benchmarks: a throwaway data home with the default corpus ingested and cleaned."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from flows.prefect_env import configure_prefect_env

configure_prefect_env()
os.environ["DRAFTFLOW_LOG_LEVEL"] = "WARNING"
logging.getLogger("draftflow").setLevel(logging.WARNING)

from storage.refs import DatasetRef  # noqa: E402
from storage.settings import Settings  # noqa: E402


def fresh_settings(prefix: str) -> Settings:
    return Settings.from_env(Path(tempfile.mkdtemp(prefix=f"draftflow-bench-{prefix}-")))


def prepared_corpus(settings: Settings, sources: list[str] | None = None) -> tuple[DatasetRef, DatasetRef]:
    from tasks.clean.stage import clean_corpus
    from tasks.ingest.stage import ingest_corpus

    raw = ingest_corpus(sources or ["python-stdlib-docs"], settings)
    return raw, clean_corpus(raw, settings)


def best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    """Fastest of several runs: the least disturbed measurement on a shared machine."""
    import time

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)
