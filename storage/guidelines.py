"""Review guidelines an admin writes per category ("*": every category), shown to editors on the review screen.

An empty text removes a category's guideline; nothing else is kept of it.
"""

from __future__ import annotations

from sqlalchemy import select

from storage.db import Database
from storage.errors import DraftflowError
from storage.models import Guideline, utcnow

ALL_CATEGORIES = "*"
ALL_HEADING = "All categories"
MAX_CATEGORY = 100
MAX_TEXT = 10_000


def set_guideline(db: Database, category: str, text: str, editor: str) -> Guideline | None:
    """Save the guideline of `category` ("*" for every category) as `editor`; an empty text deletes it (-> None)."""
    category = _check_category(category)
    text = (text or "").strip()
    editor = (editor or "").strip()
    if len(text) > MAX_TEXT:
        raise DraftflowError(
            f"the guidelines for {heading(category)} are {len(text):,} characters long: at most {MAX_TEXT:,}"
        )
    if not editor or len(editor) > 100:
        raise DraftflowError("say who changes the guidelines: an editor name of 1 to 100 characters")
    with db.transaction() as session:
        row = session.get(Guideline, category)
        if not text:
            if row is not None:
                session.delete(row)
            return None
        if row is None:
            row = Guideline(category=category, text=text, updated_by=editor, updated_at=utcnow())
            session.add(row)
        else:
            row.text, row.updated_by, row.updated_at = text, editor, utcnow()
        session.flush()
        return row


def guideline_for(db: Database, category: str | None) -> list[tuple[str, str]]:
    """What to show beside a draft of `category`: (heading, text), the general guideline first, then the category's."""
    wanted = [ALL_CATEGORIES] + ([category] if category and category != ALL_CATEGORIES else [])
    with db.session() as session:
        rows = {g.category: g.text for g in session.scalars(select(Guideline).where(Guideline.category.in_(wanted)))}
    return [(heading(c), rows[c]) for c in wanted if c in rows]


def list_guidelines(db: Database) -> list[Guideline]:
    """Every guideline, the general one ("*") first, then by category."""
    with db.session() as session:
        rows = list(session.scalars(select(Guideline).order_by(Guideline.category)))
    return sorted(rows, key=lambda g: (g.category != ALL_CATEGORIES, g.category))


def heading(category: str) -> str:
    """How a guideline's category is named to people: "All categories" for "*"."""
    return ALL_HEADING if category == ALL_CATEGORIES else category


def _check_category(category: str) -> str:
    category = (category or "").strip()
    if not category:
        raise DraftflowError('name the category of the guidelines ("*" for every category)')
    if len(category) > MAX_CATEGORY:
        raise DraftflowError(f"a category name has at most {MAX_CATEGORY} characters ({len(category)} given)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in category):
        raise DraftflowError("a category name cannot hold line breaks or control characters")
    return category
