"""Prefect caching of the corpus stages: unchanged inputs skip ingest, clean and tokenize; a change,
or a removed output, runs them again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prefect import flow

from flows.nightly import _cached
from flows.prefect_tasks import clean, ingest, tokenize
from storage.refs import BaseModelSpec
from storage.settings import Settings
from tasks.clean.params import CleanParams
from tasks.ingest.params import IngestOptions
from tests.tiny import TOKENIZE


@flow
def prepare(corpus: str, home: str) -> list[str]:
    settings = Settings.from_env(home)
    cached: list[str] = []
    raw = _cached(cached, "ingest", ingest, [corpus], settings, IngestOptions())
    cleaned = _cached(cached, "clean", clean, raw, settings, CleanParams())
    _cached(cached, "tokenize", tokenize, cleaned, BaseModelSpec(kind="scratch"), settings, TOKENIZE)
    return cached


@pytest.mark.slow
def test_unchanged_inputs_skip_the_corpus_stages(prefect_harness: None, settings: Settings, corpus_dir: Path) -> None:
    home = str(settings.home)
    assert prepare(str(corpus_dir), home) == []  # first night: everything runs
    assert prepare(str(corpus_dir), home) == ["ingest", "clean", "tokenize"]  # nothing changed
    (corpus_dir / "notes" / "note0.txt").write_text("A changed note about the module and its keys. " * 20)
    assert prepare(str(corpus_dir), home) == []  # a changed file: new raw, new clean, new tokens
    assert prepare(str(corpus_dir), home) == ["ingest", "clean", "tokenize"]
    shutil.rmtree(settings.clean_dir)  # an output removed behind the cache's back is rebuilt
    assert prepare(str(corpus_dir), home) == ["ingest", "tokenize"]
    assert (settings.clean_dir).is_dir()
