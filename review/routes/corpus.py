"""A corpus document, for the editor checking where a copied span of a draft comes from."""

from __future__ import annotations

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
    at = _find(text, span) if span else -1
    marks = [Mark(at, at + len(span), "copied", "the span the draft copies")] if at >= 0 else []
    return render(
        request,
        "corpus_document.html",
        {
            "active": "queue",
            "doc_id": doc_id,
            "fingerprint": fingerprint,
            "row": {k: v for k, v in row.items() if k != "text"},
            "segments": segments(text, marks),
            "span_found": at >= 0,
            "span": span,
        },
    )


def _find(text: str, span: str) -> int:
    """Where `span` starts in `text`, ignoring case (the n-gram check ignores it too); -1 if absent."""
    return text.lower().find(span.lower())
