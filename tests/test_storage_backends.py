"""The drafts database on SQLite and on a real PostgreSQL server: idempotent inserts, the JSON
lookup behind regeneration, keyset paging with filters, metrics and exports."""

from __future__ import annotations

import json
from pathlib import Path

from storage.db import Database
from storage.drafts import (
    DraftFilter,
    PromptRow,
    batch_members,
    existing_samples,
    insert_drafts,
    query_drafts,
    status_counts,
    upsert_prompts,
)
from storage.models import ModelVersion
from storage.runs import start_run
from tasks.review import actions as editor
from tasks.review.export import export_drafts
from tasks.review.metrics import desk_metrics


def _drafts(db: Database) -> list[int]:
    start_run(db, "night", "test", {})
    with db.transaction() as s:
        version = ModelVersion(name="v0001", path="/m", base="scratch", tokenizer_id="tok")
        s.add(version)
        s.flush()
        version_id = version.id
    prompts = [
        PromptRow(key=f"p{i}", text=f"Prompt {i} 100% _odd_", category=("news", "docs")[i % 2], source="t")
        for i in range(4)
    ]
    ids = upsert_prompts(db, prompts)
    assert upsert_prompts(db, prompts) == ids  # the same prompts again: the same ids, no new rows
    rows = [
        {
            "run_id": "night",
            "model_version_id": version_id,
            "prompt_id": ids[p.key],
            "category": p.category,
            "sample_index": s,
            "original_text": f"Draft {p.key}/{s}",
            "current_text": f"Draft {p.key}/{s}",
            "params": {"batch": {"id": f"b{s}", "position": int(p.key[1:])}},
            "seed": 7,
        }
        for p in prompts
        for s in range(2)
    ]
    assert insert_drafts(db, rows) == 8
    assert insert_drafts(db, rows) == 0  # a resumed run never duplicates a draft
    assert len(existing_samples(db, "night")) == 8
    with db.session() as s:
        from sqlalchemy import select

        from storage.models import Draft

        return list(s.scalars(select(Draft.id).order_by(Draft.id)))


def test_inserts_are_idempotent_and_batches_are_found_by_json(any_db: Database) -> None:
    _drafts(any_db)
    members = batch_members(any_db, "night", "b1")
    assert [d.params["batch"]["position"] for d, _ in members] == [0, 1, 2, 3]
    assert {d.sample_index for d, _ in members} == {1}


def test_keyset_pages_filters_and_search(any_db: Database) -> None:
    ids = _drafts(any_db)
    seen, cursor = [], None
    while True:
        rows, cursor = query_drafts(any_db, DraftFilter(status="generated"), after=cursor, limit=3)
        seen += [d.id for d, _ in rows]
        if cursor is None:
            break
    assert seen == ids  # every draft once, in order
    news, _ = query_drafts(any_db, DraftFilter(category="news", search="100% _odd_"))
    assert len(news) == 4 and all(p.category == "news" for _, p in news)
    assert query_drafts(any_db, DraftFilter(search="%"))[0] != []  # a literal %, matched as text
    assert query_drafts(any_db, DraftFilter(search="nothing like this"))[0] == []
    assert status_counts(any_db) == {"generated": 8}


def test_metrics_and_export(any_db: Database, tmp_path: Path) -> None:
    ids = _drafts(any_db)
    from sqlalchemy import update

    from storage.models import Draft

    with any_db.transaction() as s:
        s.execute(update(Draft).values(status="pending"))
    editor.edit(any_db, ids[0], "ann", "Better.")
    editor.approve(any_db, ids[0], "ann")
    editor.reject(any_db, ids[1], "ann", "style")
    m = desk_metrics(any_db)
    assert m["states"] == {"approved": 1, "rejected": 1, "pending": 6} and m["rejection_reasons"] == {"style": 1}
    out = tmp_path / "prefs.jsonl"
    assert export_drafts(any_db, out, fmt="jsonl", kind="preferences") == 2
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {p["pair"] for p in pairs} == {"edited_vs_model", "approved_vs_rejected"}
