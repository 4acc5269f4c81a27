"""What the desk gives back: metrics, exports (drafts with provenance, preference pairs) and the
approved drafts that the next night trains on."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from storage.db import Database
from storage.parquet_store import iter_batches
from storage.settings import Settings
from tasks.ingest.stage import ingest_corpus
from tasks.review import actions as editor
from tasks.review.export import export_drafts
from tasks.review.feedback import write_editor_source
from tasks.review.metrics import desk_metrics
from testkit.queue_seed import seed_drafts


def _decide(db: Database, ids: list[int]) -> None:
    for draft_id in ids[:5]:
        assert editor.claim(db, "ann").id == draft_id
        if draft_id == ids[0]:
            editor.edit(db, draft_id, "ann", "Draft 0 about topic 0, made better by an editor.")
        if draft_id in (ids[2], ids[4]):
            editor.reject(db, draft_id, "ann", "off_topic" if draft_id == ids[2] else "low_quality")
        else:
            editor.approve(db, draft_id, "ann")


def test_metrics_count_states_editors_reasons_and_edit_distance(db: Database) -> None:
    ids = seed_drafts(db, 6)
    _decide(db, ids)
    m = desk_metrics(db)
    assert m["states"] == {"approved": 3, "rejected": 2, "pending": 1}
    assert m["approval_rate"] == pytest.approx(3 / 5)
    assert m["rejection_reasons"] == {"off_topic": 1, "low_quality": 1}
    (ann,) = m["editors"]
    assert (ann["editor"], ann["decisions"], ann["approved"], ann["rejected"], ann["edited"]) == ("ann", 5, 3, 2, 1)
    assert ann["median_seconds"] is not None and ann["median_seconds"] >= 0
    assert m["edit_distance"]["n"] == 3 and m["edit_distance"]["mean"] > 0  # one of three approved was edited
    assert m["by_night"][0]["run_id"] == "night-1" and m["by_model_version"][0]["model_version"] == "v0001"
    assert desk_metrics(db, run_id="no-such-night")["states"] == {}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_export_approved_drafts_with_provenance(db: Database, tmp_path: Path, fmt: str) -> None:
    ids = seed_drafts(db, 6)
    _decide(db, ids)
    out = tmp_path / f"approved.{fmt}"
    assert export_drafts(db, out, fmt=fmt) == 3
    rows = (
        pq.read_table(out).to_pylist()
        if fmt == "parquet"
        else [json.loads(line) for line in out.read_text().splitlines()]
    )
    assert [r["draft_id"] for r in rows] == [ids[0], ids[1], ids[3]]
    first = rows[0]
    assert first["edited"] and first["text"].startswith("Draft 0 about topic 0, made better")
    assert first["original_text"].startswith("Draft 0") and first["decided_by"] == "ann"
    assert (first["run_id"], first["model_version"], first["category"]) == ("night-1", "v0001", "news")


def test_preference_pairs_from_edits_and_from_decisions_on_one_prompt(db: Database, tmp_path: Path) -> None:
    first = seed_drafts(db, 100)  # one draft per prompt
    second = seed_drafts(db, 100)  # a second draft for each prompt
    editor.edit(db, first[0], "ann", "An edited draft.")
    editor.approve(db, first[0], "ann")
    editor.reject(db, second[0], "ann", "low_quality")
    out = tmp_path / "prefs.jsonl"
    assert export_drafts(db, out, fmt="jsonl", kind="preferences") == 2
    pairs = {p["pair"]: p for p in map(json.loads, out.read_text().splitlines())}
    assert pairs["edited_vs_model"]["chosen"] == "An edited draft."
    assert pairs["edited_vs_model"]["rejected"].startswith("Draft 0")
    assert pairs["approved_vs_rejected"]["rejected_draft_id"] == second[0]
    assert pairs["approved_vs_rejected"]["prompt"] == "Write about topic 0."


def test_bad_export_options_are_user_errors(db: Database, tmp_path: Path) -> None:
    from storage.errors import DraftflowError

    with pytest.raises(DraftflowError, match="unknown format 'xml'"):
        export_drafts(db, tmp_path / "x", fmt="xml")
    with pytest.raises(DraftflowError, match="unknown status 'done'"):
        export_drafts(db, tmp_path / "x", status="done")


def test_approved_drafts_become_the_editor_approved_source(settings: Settings, db: Database, corpus_dir: Path) -> None:
    assert write_editor_source(settings) is None  # nothing approved yet: no source
    ids = seed_drafts(db, 6)
    _decide(db, ids)
    spec = write_editor_source(settings)
    assert spec is not None and spec.startswith("editor-approved=")
    raw = ingest_corpus([str(corpus_dir), spec], settings)
    sources = [t for b in iter_batches(Path(raw.path), columns=["source"]) for t in b.column("source").to_pylist()]
    assert sources.count("editor-approved") == 3
    assert raw.stats["seen"] == raw.rows + raw.stats["rejected"]
