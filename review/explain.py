"""What the review screen shows beside a draft's scores: where its flags and its facts come from.

- copied spans: the runs of words the corpus n-gram index finds in the training corpus, each
  linked to a corpus document that contains it (found through the sources index);
- personal data: the e-mails, phone numbers and public IPs the PII check counts;
- sources: the corpus passages closest to the draft (BM25), and each number and name in the
  draft that appears in none of them, marked "unsupported" for the editor to verify.

The indexes are the ones built for the corpus version the draft's model was trained on; the desk
only loads them (building is the queue stage's job), so a desk without a data home, or a draft
whose corpus index is gone, shows scores without these explanations and says so.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from storage.models import Draft, ModelVersion
from storage.settings import Settings

log = logging.getLogger(__name__)
SOURCES_SHOWN = 3


@dataclass(frozen=True)
class Mark:
    start: int
    end: int
    kind: str  # copied | pii | unsupported
    title: str
    href: str | None = None


@dataclass(frozen=True)
class Segment:
    text: str
    kinds: tuple[str, ...] = ()
    title: str = ""
    href: str | None = None


@dataclass
class Explained:
    segments: list[Segment]
    marks: list[Mark] = field(default_factory=list)
    passages: list[Any] = field(default_factory=list)
    unsupported: list[Any] = field(default_factory=list)
    copied: list[Mark] = field(default_factory=list)
    pii: list[Mark] = field(default_factory=list)
    missing: str | None = None  # why copied spans and sources are not shown

    @property
    def marked(self) -> bool:
        return bool(self.marks)


class Explainer:
    """Loads (never builds) the corpus indexes of a draft's corpus version, from the data home."""

    def __init__(self, db: Any, home: Any) -> None:
        self.db = db
        self.settings = Settings.from_env(home) if home is not None else None

    def fingerprint(self, draft: Draft) -> str | None:
        with self.db.session() as session:
            query = select(ModelVersion.corpus_fingerprint).where(ModelVersion.id == draft.model_version_id)
            return session.scalar(query)

    def ngram_index(self, draft: Draft) -> Any:
        if self.settings is None:
            return None
        from tasks.review.sources import ngram_index

        return ngram_index(self.settings, self.fingerprint(draft))

    def sources_index(self, draft: Draft) -> Any:
        if self.settings is None:
            return None
        from tasks.review.sources import sources_index

        return sources_index(self.settings, self.fingerprint(draft))


def explainer_for(state: Any) -> Explainer:
    """The app's explainer (one per app: it caches the loaded indexes)."""
    explainer: Explainer | None = getattr(state, "explainer", None)
    if explainer is None:
        explainer = state.explainer = Explainer(state.db, getattr(state, "home", None))
    return explainer


def explain_draft(state: Any, draft: Draft, prompt: str) -> Explained:
    """The marks and sources for the draft's current text (see the module docstring)."""
    from tasks.clean.pii import pii_spans

    text = draft.current_text
    explainer = explainer_for(state)
    pii = [Mark(s, e, "pii", f"personal data: {kind}") for s, e, kind in pii_spans(text)]
    out = Explained(segments=[], pii=pii)
    try:
        ngrams, sources = explainer.ngram_index(draft), explainer.sources_index(draft)
    except Exception as exc:  # a damaged index must not take the review screen down
        log.warning("cannot load the corpus indexes for draft %s: %s", draft.id, exc)
        ngrams = sources = None
    if ngrams is None or sources is None:
        out.missing = (
            "The desk has no data home: copied spans and sources are not shown."
            if explainer.settings is None
            else "The corpus indexes of this draft's corpus version are not on this desk's data home: "
            "copied spans and sources are not shown."
        )
    offset = len(prompt) if prompt and text.startswith(prompt) else 0
    if ngrams is not None:
        fingerprint = explainer.fingerprint(draft)
        for start, end in ngrams.copied_spans(text[offset:]):
            span = text[offset + start : offset + end]
            found = sources.containing(span) if sources is not None else None
            href = None
            if found is not None:
                href = f"/corpus/{fingerprint}/{quote(str(found.doc_id), safe='')}?span={quote(span[:300])}"
            where = f"copied from corpus document {found.doc_id}" if found else "copied from the corpus"
            out.copied.append(Mark(offset + start, offset + end, "copied", where, href))
    if sources is not None:
        from tasks.review.sources import unsupported_claims

        out.passages = sources.closest(text, k=SOURCES_SHOWN)
        out.unsupported = unsupported_claims(text, out.passages)
        unsupported = [
            Mark(c.start, c.end, "unsupported", f"unsupported {c.kind}: in none of the closest corpus passages")
            for c in out.unsupported
        ]
    else:
        unsupported = []
    out.marks = sorted([*out.copied, *pii, *unsupported], key=lambda m: (m.start, m.end))
    out.segments = segments(text, out.marks)
    return out


def segments(text: str, marks: list[Mark]) -> list[Segment]:
    """The text cut at every mark boundary; each piece carries the kinds of the marks over it."""
    cuts = sorted({0, len(text), *(m.start for m in marks), *(m.end for m in marks)})
    pieces: list[Segment] = []
    for start, end in itertools.pairwise(cuts):
        if start >= end:
            continue
        over = [m for m in marks if m.start <= start and end <= m.end]
        pieces.append(
            Segment(
                text[start:end],
                tuple(dict.fromkeys(m.kind for m in over)),
                "; ".join(dict.fromkeys(m.title for m in over)),
                next((m.href for m in over if m.href), None),
            )
        )
    return pieces
