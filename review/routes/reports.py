"""Metrics and export screens."""

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
from review.security import Db, SignedIn
from storage.errors import DraftflowError

router = APIRouter()

FORMATS = {"parquet": "application/vnd.apache.parquet", "jsonl": "application/x-ndjson"}
KINDS = ("drafts", "preferences")


@router.get("/metrics")
def metrics_page(request: Request, account: SignedIn, db: Db) -> Response:
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
        },
    )


@router.get("/export")
def export_page(request: Request, account: SignedIn) -> Response:
    return render(
        request, "export.html", {"active": "export", "formats": list(FORMATS), "kinds": KINDS, "statuses": STATUSES}
    )


@router.post("/export")
def export(
    request: Request,
    account: SignedIn,
    db: Db,
    fmt: Annotated[str, Form()] = "parquet",
    kind: Annotated[str, Form()] = "drafts",
    status: Annotated[str, Form()] = "approved",
) -> Response:
    """Write the export to a temporary folder, send it, and delete it once sent."""
    from tasks.review.export import export_drafts  # pulls pyarrow: loaded on first export

    if fmt not in FORMATS:
        raise DraftflowError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
    folder = Path(tempfile.mkdtemp(prefix="draftflow-export-"))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"draftflow-{kind if kind == 'preferences' else status}-{stamp}.{fmt}"
    out = folder / name
    try:
        export_drafts(db, out, fmt=fmt, status=status, kind=kind)
    except BaseException:
        _remove(folder)
        raise
    return FileResponse(out, media_type=FORMATS[fmt], filename=name, background=BackgroundTask(_remove, folder))


def _remove(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink(missing_ok=True)
    folder.rmdir()
