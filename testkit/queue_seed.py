"""Fill a drafts database fast, straight through SQL: a run, a model version, prompts and drafts.

For the queue tests (thousands of drafts) and the queue benchmark (a million): no model, no
generation, bulk inserts in chunks.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from storage.db import Database
from storage.models import Draft, ModelVersion, Prompt, Run, utcnow

CATEGORIES = ("news", "product description", "technical doc")


def seed_drafts(
    db: Database, n: int, status: str = "pending", run_id: str = "night-1", chunk: int = 20_000
) -> list[int]:
    """`n` drafts spread over 100 prompts of three categories, created a millisecond apart; ids returned."""
    start = utcnow() - timedelta(days=1)
    with db.transaction() as s:
        if s.get(Run, run_id) is None:
            s.add(Run(id=run_id, kind="test", params={}, summary={}, status="completed"))
        version = s.scalar(sa.select(ModelVersion).limit(1))
        if version is None:
            version = ModelVersion(name="v0001", path="/nowhere", base="scratch", tokenizer_id="tok")
            s.add(version)
        s.flush()
        prompts = []
        for i in range(100):
            key = f"seed:{run_id}:{i}"
            prompt = s.scalar(sa.select(Prompt).where(Prompt.key == key))
            if prompt is None:
                prompt = Prompt(key=key, text=f"Write about topic {i}.", category=CATEGORIES[i % 3], source="seed")
                s.add(prompt)
            prompts.append(prompt)
        s.flush()
        version_id, prompt_ids = version.id, [(p.id, p.category) for p in prompts]
        first = (
            s.execute(
                sa.select(sa.func.coalesce(sa.func.max(Draft.sample_index), -1)).where(Draft.run_id == run_id)
            ).scalar_one()
            + 1
        )
    for lo in range(0, n, chunk):
        rows = []
        for i in range(lo, min(n, lo + chunk)):
            prompt_id, category = prompt_ids[i % 100]
            at = start + timedelta(milliseconds=i)
            text = f"Draft {i} about topic {i % 100}: the quick brown fox jumps over the lazy dog."
            rows.append(
                {
                    "run_id": run_id,
                    "model_version_id": version_id,
                    "prompt_id": prompt_id,
                    "sample_index": first + i,
                    "original_text": text,
                    "current_text": text,
                    "params": {},
                    "seed": i,
                    "scores": {},
                    "status": status,
                    "version": 1,
                    "created_at": at,
                    "updated_at": at,
                    "category": category,
                    "flags": "",
                    "priority": 0,
                    "approvals": 0,
                }
            )
        with db.transaction() as s:
            s.execute(sa.insert(Draft), rows)
    with db.session() as s:
        return list(
            s.scalars(sa.select(Draft.id).where(Draft.run_id == run_id, Draft.sample_index >= first).order_by(Draft.id))
        )
