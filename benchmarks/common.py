"""Shared set-up for the benchmarks: a throwaway data home with the default corpus, timing, and targets.

Every script compares the stage with a baseline in the same run, prints each figure with its
target, and exits 1 when a target is missed (`Targets.finish`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
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


def seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Targets:
    """Each figure against its target; `finish()` exits 1 when any was missed."""

    def __init__(self) -> None:
        self.missed: list[str] = []

    def check(self, what: str, value: float, wanted: str, target: float, unit: str = "x") -> bool:
        met = value >= target if wanted == ">=" else value <= target
        print(f"  target {'met   ' if met else 'MISSED'}: {what} = {value:.3g}{unit} (wanted {wanted} {target}{unit})")
        if not met:
            self.missed.append(what)
        return met

    def finish(self) -> None:
        if self.missed:
            print(f"missed {len(self.missed)} target(s): {'; '.join(self.missed)}")
            sys.exit(1)
        print("all targets met")
