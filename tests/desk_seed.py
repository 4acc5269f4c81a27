"""A small, real desk database for the web desk's tests: runs, model versions, prompts, drafts, editors.

Straight through the ORM (no model, no generation): a handful of pending drafts with categories,
flags and check scores, one of them holding markup that must only ever be shown as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from storage.accounts import create_editor
from storage.db import Database
from storage.models import Draft, DraftStatus, ModelVersion, Prompt, Run, utcnow

XSS_TEXT = "Beware <script>alert(1)</script> and <b>bold</b> & “quotes” in generated text."
EDITOR = ("ed", "editor-password-1")
ADMIN = ("boss", "admin-password-1")
OTHER_EDITOR = ("kim", "kim-password-12")

# (category, flags, text): queue order is this order (created a second apart)
DRAFTS = [
    ("technical doc", "", "The module returns a value for each key in the mapping."),
    ("technical doc", "repetitive", "A thread queue is a list of a list of a list of jobs."),
    ("news", "", XSS_TEXT),
    ("news", "copied", "When the object is not found the caller raises an error."),
    ("product description", "", "A sturdy kettle that boils water in two minutes."),
    ("product description", "pii", "Call us at 555 0100 for the socket adapter."),
]


@dataclass
class Seeded:
    run_ids: list[str]
    model_version_ids: list[int]
    draft_ids: list[int] = field(default_factory=list)
    xss_id: int = 0


def seed_desk(db: Database, extra_night_drafts: int = 0) -> Seeded:
    """Two nights and two model versions; DRAFTS go to night 1 / v0001, `extra_night_drafts` more to night 2 / v0002.

    Also creates the editors EDITOR and OTHER_EDITOR (role editor) and ADMIN (role admin).
    """
    start = utcnow() - timedelta(hours=1)
    with db.transaction() as s:
        s.add_all(
            [
                Run(id="night-1", kind="nightly", params={}, summary={}, status="completed"),
                Run(
                    id="night-2",
                    kind="nightly",
                    params={},
                    summary={},
                    status="completed",
                    started_at=utcnow() + timedelta(seconds=1),
                ),
            ]
        )
        versions = [
            ModelVersion(name=name, path=f"/models/{name}", base="scratch", tokenizer_id="tok")
            for name in ("v0001", "v0002")
        ]
        s.add_all(versions)
        s.flush()
        rows = [("night-1", versions[0].id, *d) for d in DRAFTS]
        rows += [
            ("night-2", versions[1].id, "news", "", f"Night two draft number {i} about a file path.")
            for i in range(extra_night_drafts)
        ]
        drafts = []
        for i, (night, version_id, category, flags, text) in enumerate(rows):
            prompt = Prompt(
                key=f"seed:{night}:{i}", text=f"Prompt {i}: write about <{category}>.", category=category, source="seed"
            )
            s.add(prompt)
            s.flush()
            at = start + timedelta(seconds=i)
            scores = {
                "n_words": len(text.split()),
                "repetition": 0.6 if flags == "repetitive" else 0.0,
                "copied_8gram_share": 0.9 if flags == "copied" else 0.05,
                "copied_13gram_share": 0.5 if flags == "copied" else 0.0,
                "longest_copied_words": 40 if flags == "copied" else 3,
                "pii_email": 0,
                "pii_phone": 1 if flags == "pii" else 0,
                "pii_ip": 0,
                "flags": [f for f in flags.split(",") if f],
            }
            draft = Draft(
                run_id=night,
                model_version_id=version_id,
                prompt_id=prompt.id,
                sample_index=0,
                original_text=text,
                current_text=text,
                params={"temperature": 0.8, "top_p": 0.95},
                seed=1000 + i,
                scores=scores,
                status=DraftStatus.PENDING.value,
                version=1,
                created_at=at,
                updated_at=at,
                category=category,
                flags=flags,
                priority=0,
                approvals=0,
            )
            s.add(draft)
            drafts.append(draft)
        s.flush()
        seeded = Seeded(
            run_ids=["night-1", "night-2"],
            model_version_ids=[v.id for v in versions],
            draft_ids=[d.id for d in drafts],
            xss_id=drafts[2].id,
        )
    for name, password in (EDITOR, OTHER_EDITOR):
        create_editor(db, name, password, "editor")
    create_editor(db, *ADMIN, role="admin")
    return seeded


def draft_row(db: Database, draft_id: int) -> Draft:
    with db.session() as s:
        return s.get(Draft, draft_id)


def actions_of(db: Database, draft_id: int) -> list[str]:
    from storage.models import ReviewEvent

    with db.session() as s:
        return list(
            s.scalars(sa.select(ReviewEvent.action).where(ReviewEvent.draft_id == draft_id).order_by(ReviewEvent.id))
        )
