"""`draftflow status`: the last runs, the model versions and the review queue at a glance."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from sqlalchemy import select

from flows import console
from flows.console import plain
from storage.db import Database
from storage.drafts import status_counts
from storage.models import ModelVersion, Run


def collect_status(db: Database, limit: int = 10) -> dict[str, Any]:
    with db.session() as session:
        runs = session.scalars(select(Run).order_by(Run.started_at.desc()).limit(limit)).all()
        versions = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(limit)).all()
        return {
            "runs": [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "status": r.status,
                    "started_at": r.started_at.isoformat(),
                    "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                    "error": r.error,
                }
                for r in runs
            ],
            "model_versions": [
                {
                    "name": v.name,
                    "base": v.base,
                    "method": v.method,
                    "trainable_params": v.trainable_params,
                    "val_loss": v.val_loss,
                    "perplexity": v.perplexity,
                    "promoted": v.promoted,
                    "created_at": v.created_at.isoformat(),
                    "path": v.path,
                }
                for v in versions
            ],
            "queue": status_counts(db),
        }


def print_status(db: Database, as_json: bool) -> None:
    data = collect_status(db)
    if as_json:
        console.print_json(data)
        return
    runs = Table("run", "kind", "status", "started", "error", title="Runs", title_justify="left")
    for r in data["runs"]:
        runs.add_row(r["id"][:12], r["kind"], r["status"], r["started_at"][:19], plain((r["error"] or "")[:60]))
    models = Table(
        "version",
        "base",
        "method",
        "val loss",
        "perplexity",
        "promoted",
        "created",
        title="Model versions",
        title_justify="left",
    )
    for v in data["model_versions"]:
        models.add_row(
            v["name"],
            plain(v["base"][:40]),
            v["method"],
            f"{v['val_loss']:.4f}" if v["val_loss"] else "-",
            f"{v['perplexity']:.1f}" if v["perplexity"] else "-",
            "yes" if v["promoted"] else "no",
            v["created_at"][:19],
        )
    console.out.print(runs, models)
    queue = ", ".join(f"{k} {n}" for k, n in sorted(data["queue"].items())) or "empty"
    console.out.print(f"Review queue: {queue}")
