"""The queue screen: counts per state, filters, search and keyset paging.

Every filter value is passed to storage.drafts.query_drafts as a bound parameter. Paging is by
keyset (created_at, id), carried in the `after` parameter, so page 20,000 costs what page 1 does.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from review.forms import LARGEST, parse_int
from review.lookups import model_versions, nights
from review.pages import render
from review.security import Db, SignedIn
from storage.db import Database
from storage.drafts import DraftFilter, categories, query_drafts, status_counts
from storage.errors import DraftflowError
from storage.models import Draft, DraftStatus, Prompt

router = APIRouter()

STATUSES = [s.value for s in DraftStatus]
PAGE_SIZES = (10, 25, 50, 100, 200)
DEFAULT_PAGE = 50
DEFAULT_STATUS = DraftStatus.PENDING.value
KNOWN_FLAGS = ("copied", "repetitive", "pii", "too_short", "blocklist")
CLIP = 160  # characters of prompt and draft shown per row
MAX_CURSOR_TIME = 40  # characters of the cursor's ISO time (32 with microseconds and an offset)


def parse_filter(request: Request) -> DraftFilter:
    """The queue's filters from the query string; a malformed value is a readable 400, never SQL."""
    q = request.query_params
    # The screen opens on the pending queue (what editors work through); `status=` (empty) means every state.
    status = q.get("status", DEFAULT_STATUS) or None
    if status is not None and status not in STATUSES:
        raise DraftflowError(f"unknown state {status!r} (one of: {', '.join(STATUSES)})")
    return DraftFilter(
        status=status,
        category=q.get("category") or None,
        flag=q.get("flag") or None,
        model_version_id=parse_int(q.get("model"), "model version"),
        run_id=q.get("night") or None,
        editor=q.get("editor") or None,
        search=(q.get("q") or "").strip() or None,
    )


def encode_cursor(cursor: tuple[str, int]) -> str:
    return f"{cursor[0]}~{cursor[1]}"


def decode_cursor(value: str | None) -> tuple[str, int] | None:
    """The (created_at, id) of an `after` parameter; anything but a time and a bounded id is a 400."""
    if not value:
        return None
    at, _, last_id = value.rpartition("~")
    # ASCII digits only (str.isdigit takes "²"), and no wider than the id column
    if not at or len(at) > MAX_CURSOR_TIME or not re.fullmatch(r"[0-9]{1,19}", last_id) or int(last_id) > LARGEST:
        raise DraftflowError("bad page cursor: start again from the first page")
    try:
        datetime.fromisoformat(at)
    except ValueError:
        raise DraftflowError("bad page cursor: start again from the first page") from None
    return at, int(last_id)


@router.get("/")
def queue_page(request: Request, account: SignedIn, db: Db) -> Response:
    where = parse_filter(request)
    size = parse_int(request.query_params.get("size"), "page size") or DEFAULT_PAGE
    size = min(max(size, 1), max(PAGE_SIZES))
    after = decode_cursor(request.query_params.get("after"))
    rows, cursor = query_drafts(db, where, after=after, limit=size)
    # status is always in the links, empty for "every state", since leaving it out means pending
    params = {key: value for key, value in _filter_params(where).items() if value or key == "status"}
    if size != DEFAULT_PAGE:
        params["size"] = str(size)
    counts = _counts(db, where.run_id)
    return render(
        request,
        "queue.html",
        {
            "active": "queue",
            "rows": [_row(draft, prompt) for draft, prompt in rows],
            "where": where,
            "counts": [(s, counts.get(s, 0)) for s in STATUSES],
            "total": sum(counts.values()),
            "categories": categories(db),
            "versions": model_versions(db),
            "nights": nights(db),
            "flags": KNOWN_FLAGS,
            "size": size,
            "sizes": PAGE_SIZES,
            "paged": after is not None,
            "next_url": _url({**params, "after": encode_cursor(cursor)}) if cursor else None,
            "first_url": _url(params),
            "status_url": lambda s: _url({**params, "status": s}),
        },
    )


# Per-state counts scan the drafts table (74 ms on SQLite, 242 ms on PostgreSQL at 1M drafts;
# BENCHMARKS.md): when a count is that slow, reuse it for a few seconds instead of paying it on
# every page. Small queues are counted fresh each time.
SLOW_COUNT_SECONDS = 0.05
COUNT_TTL_SECONDS = 10.0
_count_cache: dict[tuple[str, str | None], tuple[float, dict[str, int]]] = {}


def _counts(db: Database, run_id: str | None) -> dict[str, int]:
    key = (db.url, run_id)
    cached = _count_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < COUNT_TTL_SECONDS:
        return cached[1]
    started = time.monotonic()
    counts = status_counts(db, run_id=run_id)
    if time.monotonic() - started > SLOW_COUNT_SECONDS:
        _count_cache[key] = (time.monotonic(), counts)
    else:
        _count_cache.pop(key, None)
    return counts


def _url(params: dict[str, str]) -> str:
    return "/?" + urlencode(params) if params else "/"


@router.get("/queue")
def queue_alias(request: Request) -> Response:
    query = request.url.query
    return RedirectResponse("/?" + query if query else "/", status_code=307)


def _filter_params(where: DraftFilter) -> dict[str, str]:
    return {
        "status": where.status or "",
        "category": where.category or "",
        "flag": where.flag or "",
        "model": "" if where.model_version_id is None else str(where.model_version_id),
        "night": where.run_id or "",
        "editor": where.editor or "",
        "q": where.search or "",
    }


def _row(draft: Draft, prompt: Prompt) -> dict[str, object]:
    return {
        "id": draft.id,
        "status": draft.status,
        "category": draft.category or prompt.category or "",
        "flags": [f for f in (draft.flags or "").split(",") if f],
        "prompt": _clip(prompt.text),
        "text": _clip(draft.current_text),
        "edited": draft.current_text != draft.original_text,
        "claimed_by": draft.claimed_by,
        "night": draft.run_id,
        "model_version_id": draft.model_version_id,
        "created_at": draft.created_at,
    }


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CLIP else text[: CLIP - 1] + "…"
