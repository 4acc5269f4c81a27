"""Clean: normalization, quality filters with reasons, exact dedup, counts that add up."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.errors import DraftflowError
from storage.parquet_store import iter_batches
from storage.settings import Settings
from tasks.clean import CleanParams, clean_corpus, normalize_text
from tasks.ingest import ingest_corpus


def rows(directory: Path) -> list[dict]:
    return [r for b in iter_batches(directory) for r in b.to_pylist()]


def test_normalize_text_removes_control_characters_and_extra_blank_lines() -> None:
    assert normalize_text("a\x00b\x07c  \r\n\n\n\n\tindented\x9f  ") == "abc\n\n\tindented"
    assert normalize_text("cafe\u0301") == "caf\u00e9"  # NFC


def test_filters_and_dedup_record_reasons_and_counts_add_up(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    good = "The function returns a new list with every item of the iterable in order."
    (src / "a.txt").write_text(good)
    (src / "b.txt").write_text(good.upper() + "  ")  # same normalized text -> duplicate
    (src / "c.txt").write_text("Too short.")
    (src / "d.txt").write_text("{} [] () <> ## $$ %% ^^ && ** || ;; :: ~~ ?? !! @@ == ++ -- __ a b c d e")
    (src / "e.txt").write_text("Another fine document\x07 about sockets, queues and threads in Python.")
    raw = ingest_corpus([str(src)], settings)
    ref = clean_corpus(raw, settings, CleanParams(min_words=5, min_alpha_ratio=0.5))

    kept = rows(settings.clean_dir)
    rejected = rows(settings.rejected_dir("clean"))
    assert ref.rows == len(kept) == 2
    assert sorted(r["reason"] for r in rejected) == ["duplicate", "symbol_heavy", "too_short"]
    dup = next(r for r in rejected if r["reason"] == "duplicate")
    assert dup["detail"] == f"duplicate of {kept[0]['doc_id']}"  # the first occurrence survives
    assert ref.stats["input"] == raw.rows == ref.stats["kept"] + ref.stats["rejected"]
    assert {"n_words", "n_chars", "mean_word_length", "alpha_ratio"} <= set(kept[0])
    assert "\x07" not in kept[1]["text"]


def test_thresholds_are_parameters(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text("Too short.")
    raw = ingest_corpus([str(tmp_path / "short.txt")], settings)
    assert clean_corpus(raw, settings, CleanParams(min_words=1)).rows == 1


def test_empty_corpus_after_cleaning_is_a_user_error(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("tiny")
    (tmp_path / "b.txt").write_text("also tiny")
    raw = ingest_corpus([str(tmp_path)], settings)
    with pytest.raises(DraftflowError, match=r"no documents left after cleaning: all 2 were rejected \(2 too_short\)"):
        clean_corpus(raw, settings)
    assert len(rows(settings.rejected_dir("clean"))) == 2  # the reasons are still on disk


def test_clean_without_ingest_says_what_to_run(settings: Settings) -> None:
    from storage.refs import DatasetRef

    with pytest.raises(DraftflowError, match="draftflow ingest"):
        clean_corpus(DatasetRef(path=str(settings.raw_dir), fingerprint="x", rows=0), settings)
