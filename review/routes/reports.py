"""Metrics and export screens.

Exports hold every draft with its notes and the editors' names: only admins may take one, and
each is written to the audit log (storage.audit), shown on the export page.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from review.forms import parse_int
from review.lookups import model_versions, nights
from review.pages import render
from review.routes.queue import STATUSES
from review.security import AdminOnly, Db, SignedIn
from storage import audit
from storage.errors import DraftflowError

router = APIRouter()

FORMATS = {"parquet": "application/vnd.apache.parquet", "jsonl": "application/x-ndjson"}
KINDS = ("drafts", "preferences")
EXPORT_ACTION = "export"
RECENT_EXPORTS = 20  # shown on the export page


@router.get("/metrics")
def metrics_page(request: Request, account: SignedIn, db: Db) -> Response:
    from tasks.evaluate.report import version_rows
    from tasks.review.metrics import desk_metrics  # pulls rapidfuzz: loaded when the page is first opened

    night = request.query_params.get("night") or None
    version = parse_int(request.query_params.get("model"), "model version")
    metrics = desk_metrics(db, run_id=night, model_version_id=version)
    return render(
        request,
        "metrics.html",
        {
            "active": "metrics",
            "m": metrics,
            "night": night or "",
            "model": version,
            "nights": nights(db),
            "versions": model_versions(db),
            "versions_table": version_rows(db),
        },
    )


@router.get("/export")
def export_page(request: Request, admin: AdminOnly, db: Db) -> Response:
    return render(
        request,
        "export.html",
        {
            "active": "export",
            "formats": list(FORMATS),
            "kinds": KINDS,
            "statuses": STATUSES,
            "exports": audit.recent(db, EXPORT_ACTION, limit=RECENT_EXPORTS),
        },
    )


@router.post("/export")
def export(
    request: Request,
    admin: AdminOnly,
    db: Db,
    fmt: Annotated[str, Form()] = "parquet",
    kind: Annotated[str, Form()] = "drafts",
    status: Annotated[str, Form()] = "approved",
) -> Response:
    """Write the export to a temporary folder, send it, and delete it once sent; record who took what."""
    from tasks.review.export import export_drafts  # pulls pyarrow: loaded on first export

    if fmt not in FORMATS:
        raise DraftflowError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
    if kind not in KINDS:
        raise DraftflowError(f"unknown export kind {kind!r} (one of: {', '.join(KINDS)})")
    if status not in STATUSES:  # checked here too: it becomes part of the file name
        raise DraftflowError(f"unknown state {status!r} (one of: {', '.join(STATUSES)})")
    folder = Path(tempfile.mkdtemp(prefix="draftflow-export-"))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"draftflow-{kind if kind == 'preferences' else status}-{stamp}.{fmt}"
    out = folder / name
    try:
        rows = export_drafts(db, out, fmt=fmt, status=status, kind=kind)
    except BaseException:
        _remove(folder)
        raise
    detail = {"kind": kind, "status": status if kind == "drafts" else None, "format": fmt, "rows": rows}
    audit.record(db, admin.name, EXPORT_ACTION, detail)
    return FileResponse(out, media_type=FORMATS[fmt], filename=name, background=BackgroundTask(_remove, folder))


def _remove(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink(missing_ok=True)
    folder.rmdir()
