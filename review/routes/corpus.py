"""A corpus document, for the editor checking where a copied span of a draft comes from."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from review.explain import Mark, explainer_for, segments
from review.pages import render
from review.security import SignedIn
from storage.errors import NotFoundError

router = APIRouter()

MAX_SPAN = 300


@router.get("/corpus/{fingerprint}/{doc_id}")
def corpus_document_page(
    request: Request,
    account: SignedIn,
    fingerprint: Annotated[str, Path(pattern=r"^[0-9a-zA-Z_-]{1,64}$")],
    doc_id: Annotated[str, Path(max_length=300)],
    span: str = "",
) -> Response:
    """The document as the clean corpus has it now, with the copied span (`span`) highlighted."""
    from tasks.review.sources import corpus_document

    settings = explainer_for(request.app.state).settings
    if settings is None:
        raise NotFoundError("this desk has no data home: corpus documents cannot be shown")
    row = corpus_document(settings.clean_dir, doc_id)
    if row is None:
        raise NotFoundError(f"document {doc_id!r} is not in the current clean corpus (it may be an older version)")
    text = str(row.get("text", ""))
    span = span[:MAX_SPAN].strip()
    found = _find(text, span) if span else None
    marks = [Mark(found[0], found[1], "copied", "the span the draft copies")] if found else []
    return render(
        request,
        "corpus_document.html",
        {
            "active": "queue",
            "doc_id": doc_id,
            "fingerprint": fingerprint,
            "row": {k: v for k, v in row.items() if k != "text"},
            "segments": segments(text, marks),
            "span_found": found is not None,
            "span": span,
        },
    )


def _find(text: str, span: str) -> tuple[int, int] | None:
    """Where the words of `span` are in `text`, ignoring case, punctuation and line breaks between
    them (the n-gram check compares words the same way); None if absent."""
    words = re.findall(r"\w+", span)
    if not words:
        return None
    match = re.search(r"\W+".join(map(re.escape, words)), text, flags=re.IGNORECASE)
    return (match.start(), match.end()) if match else None
