"""Export what editors decided: approved drafts with provenance, and preference pairs.

- drafts: one row per draft of a status (default approved): the final text, the model's text,
  who decided and when, and where it came from (run, model version, prompt, seed, parameters).
- preferences: (prompt, chosen, rejected) pairs for preference tuning (DPO-style):
  an edited approved draft gives (edited text > model text); within one prompt and one night, an
  approved draft beats each rejected one (approved final text > rejected model text).

Drafts are read in keyset pages of PAGE rows, so memory stays bounded at any queue size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from storage.db import Database
from storage.errors import DraftflowError
from storage.models import Draft, DraftStatus, ModelVersion, Prompt, ReviewEvent

PAGE = 2000
FORMATS = ("parquet", "jsonl")
KINDS = ("drafts", "preferences")

DRAFT_SCHEMA = pa.schema(
    [
        ("draft_id", pa.int64()),
        ("status", pa.string()),
        ("text", pa.string()),
        ("original_text", pa.string()),
        ("edited", pa.bool_()),
        ("prompt", pa.string()),
        ("prompt_key", pa.string()),
        ("category", pa.string()),
        ("run_id", pa.string()),
        ("model_version", pa.string()),
        ("seed", pa.int64()),
        ("params", pa.string()),
        ("scores", pa.string()),
        ("decided_by", pa.string()),
        ("decided_at", pa.string()),
        ("decision_note", pa.string()),
    ]
)
PREFERENCE_SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("pair", pa.string()),
        ("chosen_draft_id", pa.int64()),
        ("rejected_draft_id", pa.int64()),
        ("category", pa.string()),
        ("model_version", pa.string()),
    ]
)


def export_drafts(
    db: Database, out: Path, fmt: str = "parquet", status: str = DraftStatus.APPROVED.value, kind: str = "drafts"
) -> int:
    """Write the export to `out` (parent folders made); returns the number of rows written."""
    if fmt not in FORMATS:
        raise DraftflowError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
    if kind not in KINDS:
        raise DraftflowError(f"unknown export kind {kind!r} (one of: {', '.join(KINDS)})")
    if status not in {s.value for s in DraftStatus}:
        raise DraftflowError(f"unknown status {status!r} (one of: {', '.join(s.value for s in DraftStatus)})")
    rows = draft_records(db, status) if kind == "drafts" else preference_pairs(db)
    schema = DRAFT_SCHEMA if kind == "drafts" else PREFERENCE_SCHEMA
    if out.is_dir():
        raise DraftflowError(f"'{out}' is a folder: give the export a file name, e.g. {out / ('approved.' + fmt)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")  # a crash never leaves a half file under the real name
    try:
        written = _write_jsonl(rows, partial) if fmt == "jsonl" else _write_parquet(rows, partial, schema)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)  # a full disk or a kill: no half file left behind
        raise
    return written


def draft_records(db: Database, status: str = DraftStatus.APPROVED.value) -> Iterator[dict[str, Any]]:
    for draft, prompt, version in _pages(db, [Draft.status == status], order_by_prompt=False):
        decision = _last_decision(db, draft.id)
        yield {
            "draft_id": draft.id,
            "status": draft.status,
            "text": draft.current_text,
            "original_text": draft.original_text,
            "edited": draft.current_text != draft.original_text,
            "prompt": prompt.text,
            "prompt_key": prompt.key,
            "category": prompt.category,
            "run_id": draft.run_id,
            "model_version": version,
            "seed": draft.seed,
            "params": json.dumps(draft.params, sort_keys=True),
            "scores": json.dumps(draft.scores, sort_keys=True),
            "decided_by": decision.actor if decision else None,
            "decided_at": decision.at.isoformat() if decision else None,
            "decision_note": decision.note if decision else None,
        }


def preference_pairs(db: Database) -> Iterator[dict[str, Any]]:
    decided = [Draft.status.in_([DraftStatus.APPROVED.value, DraftStatus.REJECTED.value])]
    group: list[tuple[Draft, Prompt, str]] = []
    for row in _pages(db, decided, order_by_prompt=True):
        if group and group[0][0].prompt_id != row[0].prompt_id:
            yield from _pairs_of(group)
            group = []
        group.append(row)
    yield from _pairs_of(group)


def _pairs_of(group: list[tuple[Draft, Prompt, str]]) -> Iterator[dict[str, Any]]:
    approved = [(d, p, v) for d, p, v in group if d.status == DraftStatus.APPROVED.value]
    rejected = [(d, p, v) for d, p, v in group if d.status == DraftStatus.REJECTED.value]
    for d, p, v in approved:
        if d.current_text != d.original_text:
            yield _pair(p, d.current_text, d.original_text, "edited_vs_model", d.id, d.id, v)
        for r, _, _ in rejected:
            # the same night only: one model, one prompt, two samples. Across nights the pairs of a
            # prompt that comes back every night would grow with the square of the nights.
            if r.run_id == d.run_id:
                yield _pair(p, d.current_text, r.original_text, "approved_vs_rejected", d.id, r.id, v)


def _pair(
    prompt: Prompt, chosen: str, rejected: str, kind: str, chosen_id: int, rejected_id: int, version: str
) -> dict[str, Any]:
    return {
        "prompt": prompt.text,
        "chosen": chosen,
        "rejected": rejected,
        "pair": kind,
        "chosen_draft_id": chosen_id,
        "rejected_draft_id": rejected_id,
        "category": prompt.category,
        "model_version": version,
    }


def _pages(db: Database, where: list[Any], order_by_prompt: bool) -> Iterator[tuple[Draft, Prompt, str]]:
    """Rows in keyset pages: by id, or by (prompt, id) so one prompt's drafts come together."""
    last: tuple[int, int] = (-1, -1)
    while True:
        query = (
            select(Draft, Prompt, ModelVersion.name)
            .join(Prompt, Prompt.id == Draft.prompt_id)
            .join(ModelVersion, ModelVersion.id == Draft.model_version_id)
            .where(*where)
        )
        if order_by_prompt:
            query = query.where((Draft.prompt_id > last[0]) | ((Draft.prompt_id == last[0]) & (Draft.id > last[1])))
            query = query.order_by(Draft.prompt_id, Draft.id)
        else:
            query = query.where(Draft.id > last[1]).order_by(Draft.id)
        with db.session() as session:
            rows = [(d, p, v) for d, p, v in session.execute(query.limit(PAGE)).all()]
        if not rows:
            return
        yield from rows
        last = (rows[-1][0].prompt_id, rows[-1][0].id)


def _last_decision(db: Database, draft_id: int) -> ReviewEvent | None:
    with db.session() as session:
        return session.scalar(
            select(ReviewEvent)
            .where(ReviewEvent.draft_id == draft_id, ReviewEvent.action.in_(["approve", "reject"]))
            .order_by(ReviewEvent.id.desc())
            .limit(1)
        )


def _write_jsonl(rows: Iterator[dict[str, Any]], path: Path) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _write_parquet(rows: Iterator[dict[str, Any]], path: Path, schema: pa.Schema) -> int:
    n, chunk = 0, []
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for row in rows:
            chunk.append(row)
            if len(chunk) == PAGE:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                n, chunk = n + len(chunk), []
        if chunk or n == 0:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            n += len(chunk)
    return n
