"""What `draftflow models` and the desk's metrics page show: versions with their evaluation and
their editors' verdict, one version in full, and two versions side by side."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storage.db import Database
from storage.evaluations import evaluation_drafts, evaluation_of, evaluations
from storage.models import ModelVersion
from storage.registry import get_model_version
from tasks.review.metrics import desk_metrics

# the figures compared, with the direction that is better
COMPARED = (
    ("bits_per_byte", "lower"),
    ("repetition", "lower"),
    ("echo_rate", "lower"),
    ("empty_rate", "lower"),
    ("eos_rate", "higher"),
    ("distinct_1", "higher"),
    ("distinct_2", "higher"),
    ("mean_words", "-"),
    ("originality", "higher"),
    ("approval_rate", "higher"),
    ("mean_edit_distance", "lower"),
)


def version_rows(db: Database) -> list[dict[str, Any]]:
    """Every version, oldest first: registry facts, evaluation figures, editors' approval and edits."""
    with db.session() as session:
        versions = list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))
    evaluated = evaluations(db)
    editors = {row["model_version"]: row for row in desk_metrics(db)["by_model_version"]}
    rows = []
    for v in versions:
        e = evaluated.get(v.id)
        verdict = editors.get(v.name, {})
        rows.append(
            {
                "version": v.name,
                "created_at": v.created_at.isoformat(timespec="seconds"),
                "base": v.base,
                "method": f"{v.method}+{v.preference.get('method', 'dpo')}" if v.preference else v.method,
                "preference_pairs": v.preference.get("pairs") if v.preference else None,
                "promoted": v.promoted,
                "perplexity": v.perplexity,
                "bits_per_byte": e.bits_per_byte if e else None,
                **({k: e.draft_metrics.get(k) for k, _ in COMPARED[1:9]} if e else {}),
                "eval_set": e.eval_set if e else None,
                "approved": verdict.get("approved", 0),
                "rejected": verdict.get("rejected", 0),
                "approval_rate": verdict.get("approval_rate"),
                "mean_edit_distance": verdict.get("mean_edit_distance"),
            }
        )
    return rows


def version_detail(db: Database, name: str) -> dict[str, Any]:
    """One version: its row above, per-source bits per byte, preference metrics and evaluation drafts."""
    info = get_model_version(db, name)
    row = next(r for r in version_rows(db) if r["version"] == info.name)
    with db.session() as session:
        version = session.get(ModelVersion, info.id)
        assert version is not None
        preference, parent = version.preference, version.parent_id
    e = evaluation_of(db, info.id)
    return row | {
        "path": info.path,
        "parent": get_model_version(db, parent).name if parent else None,
        "by_source": e.by_source if e else {},
        "preference": preference,
        "drafts": [
            {"prompt_key": d.prompt_key, "seed": d.seed, "text": d.text, "stopped": d.stopped}
            for d in evaluation_drafts(db, info.id)
        ],
    }


def compare_versions(db: Database, a: str, b: str) -> dict[str, Any]:
    """Two versions' figures side by side (with B - A and which is better), and their evaluation
    drafts for the same prompt and seed."""
    left, right = version_detail(db, a), version_detail(db, b)
    same_set = left["eval_set"] is not None and left["eval_set"] == right["eval_set"]
    figures = []
    for key, better in COMPARED:
        x, y = left.get(key), right.get(key)
        delta = y - x if isinstance(x, int | float) and isinstance(y, int | float) else None
        figures.append({"metric": key, "a": x, "b": y, "delta": delta, "better": better})
    by_key = {(d["prompt_key"], d["seed"]): d for d in left["drafts"]}
    pairs = [
        {
            "prompt_key": d["prompt_key"],
            "seed": d["seed"],
            "a": by_key[(d["prompt_key"], d["seed"])]["text"],
            "b": d["text"],
        }
        for d in right["drafts"]
        if (d["prompt_key"], d["seed"]) in by_key
    ]
    return {"a": left["version"], "b": right["version"], "same_eval_set": same_set, "figures": figures, "drafts": pairs}
