"""Draft checks: originality against the corpus n-gram index, repetition, PII, blocklist, and routing."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from storage.db import Database
from storage.drafts import PromptRow, insert_drafts, upsert_prompts
from storage.models import Draft, ReviewEvent
from storage.parquet_store import iter_batches
from storage.refs import DatasetRef, ModelRef
from storage.runs import start_run
from storage.settings import Settings
from tasks.clean.stage import clean_corpus
from tasks.ingest.stage import ingest_corpus
from tasks.review.checks import NgramIndex, check_draft, repetition, words_of
from tasks.review.params import CheckParams
from tasks.review.stage import corpus_index, queue_run

ORIGINAL = (
    "Editors approve drafts that read well and reject the ones that do not, and the next night "
    "learns from both of those decisions without anyone copying a corpus sentence."
)


def _clean(settings: Settings, corpus_dir: Path) -> DatasetRef:
    return clean_corpus(ingest_corpus([str(corpus_dir)], settings), settings)


def _corpus_text(settings: Settings) -> str:
    return next(iter(iter_batches(settings.clean_dir, columns=["text"]))).column("text")[0].as_py()


def test_a_draft_copied_from_the_corpus_scores_as_copied(settings: Settings, corpus_dir: Path) -> None:
    clean = _clean(settings, corpus_dir)
    index = NgramIndex.load_or_build(Path(clean.path), clean.fingerprint, settings.home / "ngrams")
    copied = _corpus_text(settings)
    scores, flags = check_draft(copied, index, CheckParams())
    assert scores["copied_8gram_share"] == 1.0 and scores["copied_13gram_share"] == 1.0
    assert scores["longest_copied_words"] == len(words_of(copied)) and "copied" in flags
    half = " ".join(copied.split()[:30]) + " " + ORIGINAL
    scores, _ = check_draft(half, index, CheckParams())
    assert 0 < scores["copied_8gram_share"] < 1 and 25 <= scores["longest_copied_words"] <= 31
    scores, flags = check_draft(ORIGINAL, index, CheckParams())
    assert scores["copied_8gram_share"] == 0.0 and scores["longest_copied_words"] == 0 and flags == []


def test_the_index_is_built_once_per_corpus_version(settings: Settings, corpus_dir: Path) -> None:
    clean = _clean(settings, corpus_dir)
    first = NgramIndex.load_or_build(Path(clean.path), clean.fingerprint, settings.home / "ngrams")
    folder = settings.home / "ngrams" / clean.fingerprint
    stamp = (folder / "n8.npy").stat().st_mtime_ns
    again = NgramIndex.load_or_build(Path(clean.path), clean.fingerprint, settings.home / "ngrams")
    assert (folder / "n8.npy").stat().st_mtime_ns == stamp  # read from disk, not rebuilt
    assert all((first.arrays[n] == again.arrays[n]).all() for n in (8, 13)) and first.nbytes > 0


def test_repetition_pii_blocklist_and_length_flags() -> None:
    loop = "the value of the value of the value of the value of the value of the value"
    assert repetition(words_of(loop)) > 0.5
    assert check_draft(loop, None, CheckParams())[1] == ["repetitive"]
    assert check_draft(ORIGINAL, None, CheckParams())[1] == []
    _, flags = check_draft(ORIGINAL + " Mail jane@example.com.", None, CheckParams())
    assert flags == ["pii"]
    _, flags = check_draft(ORIGINAL, None, CheckParams(blocklist=["Corpus", "absent"]))
    assert flags == ["blocklist:Corpus"]
    assert check_draft("Too short", None, CheckParams())[1] == ["too_short"]


def test_queue_routes_flagged_drafts_aside_and_keeps_them(
    settings: Settings, db: Database, tiny_model: ModelRef
) -> None:
    start_run(db, "night", "test", {})
    ids = upsert_prompts(db, [PromptRow(key="p:1", text="Seed", category=None, source="p")])
    texts = [ORIGINAL, _corpus_text(settings), ORIGINAL + " Call +1 415 555 0100 now."]
    insert_drafts(
        db,
        [
            {
                "run_id": "night",
                "model_version_id": tiny_model.version_id,
                "prompt_id": ids["p:1"],
                "sample_index": i,
                "original_text": t,
                "current_text": t,
                "params": {},
                "seed": i,
            }
            for i, t in enumerate(texts)
        ],
    )
    result = queue_run(db, "night", corpus_index(settings, None), CheckParams())
    assert (result.queued, result.flagged) == (3, 2) and result.flags == {"copied": 1, "pii": 1}
    with db.session() as s:
        drafts = s.scalars(sa.select(Draft).order_by(Draft.sample_index)).all()
        assert [d.status for d in drafts] == ["pending", "flagged", "flagged"]
        assert drafts[1].scores["flags"] == ["copied"] and drafts[1].scores["longest_copied_words"] > 20
        notes = [e.note for e in s.scalars(sa.select(ReviewEvent).order_by(ReviewEvent.draft_id))]
        assert notes == [None, "copied", "pii"]


def test_length_and_echo_judge_what_the_model_wrote_not_its_prompt() -> None:
    prompt = "The queue module provides a thread safe first in first out implementation for producers"
    plain = CheckParams()
    assert "too_short" in check_draft(prompt + " and.", None, plain, prompt=prompt)[1]  # 1 new word, 14 in all
    same = check_draft(prompt, None, plain, prompt=prompt)
    assert {"echo", "too_short"} <= set(same[1]) and same[0]["new_words"] == 0 and same[0]["echo_share"] == 1.0
    echoed = check_draft(f"{prompt} {prompt}", None, plain, prompt=prompt)
    assert "echo" in echoed[1] and "too_short" not in echoed[1]
    written = f"{prompt} and consumers that share work across threads without explicit locking of their own."
    scores, flags = check_draft(written, None, plain, prompt=prompt)
    assert flags == [] and scores["new_words"] == 13 and scores["echo_share"] < 0.2


def test_copied_spans_are_character_offsets_of_the_copied_words(settings: Settings, corpus_dir: Path) -> None:
    clean = _clean(settings, corpus_dir)
    index = NgramIndex.build(Path(clean.path))
    copied = " ".join(_corpus_text(settings).split()[:30])
    draft = f"{ORIGINAL}\n{copied.upper()} {ORIGINAL}"  # case does not hide a copy
    spans = index.copied_spans(draft)
    assert len(spans) == 1
    start, end = spans[0]
    assert draft[start:end].lower() == re.sub(r"^\W+|\W+$", "", copied.lower())  # from its first word to its last
    assert len(words_of(draft[start:end])) == index.originality(draft)["longest_copied_words"]
    assert index.copied_spans(ORIGINAL) == [] and index.copied_spans("") == []
