"""What the desk measures: drafts per state, editor throughput and time per draft, approval rate,
rejection reasons, and how much editors change the model's text, per night and per model version.

Read from the append-only review_events (the source of truth for who did what when). Edit
distance is rapidfuzz's Levenshtein over characters between the model's text and the final text.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any

from rapidfuzz.distance import Levenshtein
from sqlalchemy import func, select

from storage.db import Database
from storage.models import Draft, DraftStatus, ModelVersion, ReviewEvent

DECISIONS = ("approve", "reject")


def desk_metrics(db: Database, run_id: str | None = None, model_version_id: int | None = None) -> dict[str, Any]:
    scope = []
    if run_id:
        scope.append(Draft.run_id == run_id)
    if model_version_id is not None:
        scope.append(Draft.model_version_id == model_version_id)
    with db.session() as session:
        states = dict(session.execute(select(Draft.status, func.count()).where(*scope).group_by(Draft.status)).all())
        events = session.execute(
            select(
                ReviewEvent.draft_id,
                ReviewEvent.actor,
                ReviewEvent.action,
                ReviewEvent.to_status,
                ReviewEvent.note,
                ReviewEvent.at,
                ReviewEvent.claimed_at,
                ReviewEvent.from_status,
            )
            .join(Draft, Draft.id == ReviewEvent.draft_id)
            .where(*scope)
            .order_by(ReviewEvent.draft_id, ReviewEvent.id)
        ).all()
        decided = session.execute(
            select(Draft.id, Draft.run_id, ModelVersion.name, Draft.status, Draft.original_text, Draft.current_text)
            .join(ModelVersion, ModelVersion.id == Draft.model_version_id)
            .where(*scope, Draft.status.in_([DraftStatus.APPROVED.value, DraftStatus.REJECTED.value]))
        ).all()

    per_editor: dict[str, Counter[str]] = defaultdict(Counter)
    seconds: dict[str, list[float]] = defaultdict(list)
    reasons: Counter[str] = Counter()
    claimed_at: dict[tuple[int, str], Any] = {}
    last_reason: dict[tuple[int, str], str] = {}
    for draft_id, actor, action, to_status, note, at, taken_at, from_status in events:
        if action == "claim":  # drafts claimed before decisions recorded when they were taken
            claimed_at[(draft_id, actor)] = at
        elif action == "undo":  # an undone decision counts for nothing: the editor took it back
            per_editor[actor]["decisions"] -= 1
            if from_status == DraftStatus.APPROVED.value:
                per_editor[actor]["approved"] -= 1
            elif from_status == DraftStatus.REJECTED.value:
                per_editor[actor]["rejected"] -= 1
                reasons[last_reason.pop((draft_id, actor), "unspecified")] -= 1
        elif action in DECISIONS or action == "edit":
            per_editor[actor]["decisions" if action in DECISIONS else "edited"] += 1
            if action == "approve" and to_status == DraftStatus.APPROVED.value:
                per_editor[actor]["approved"] += 1
            if action == "reject":
                per_editor[actor]["rejected"] += 1
                reason = (note or "").split(":")[0] or "unspecified"
                reasons[reason] += 1
                last_reason[(draft_id, actor)] = reason
            start = claimed_at.pop((draft_id, actor), None) if action in DECISIONS else None
            start = taken_at if taken_at is not None else start
            if start is not None and action in DECISIONS:  # time per draft: from the claim to the decision
                seconds[actor].append((at - start).total_seconds())

    def rate(approved: int, rejected: int) -> float | None:
        return approved / (approved + rejected) if approved + rejected else None

    distances: list[int] = []
    groups: dict[str, dict[str, dict[str, Any]]] = {"night": {}, "model": {}}
    for _, night, model, status, original, current in decided:
        for kind, key in (("night", night), ("model", model)):
            group = groups[kind].setdefault(key, {"approved": 0, "rejected": 0, "distances": []})
            group[status] += 1
            if status == DraftStatus.APPROVED.value:
                group["distances"].append(Levenshtein.distance(original, current))
        if status == DraftStatus.APPROVED.value:
            distances.append(Levenshtein.distance(original, current))

    def summarize(kind: str, label: str) -> list[dict[str, Any]]:
        return [
            {
                label: key,
                "approved": g["approved"],
                "rejected": g["rejected"],
                "approval_rate": rate(g["approved"], g["rejected"]),
                "mean_edit_distance": statistics.fmean(g["distances"]) if g["distances"] else None,
            }
            for key, g in sorted(groups[kind].items())
        ]

    approved = states.get(DraftStatus.APPROVED.value, 0)
    rejected = states.get(DraftStatus.REJECTED.value, 0)
    return {
        "states": states,
        "editors": [
            {
                "editor": name,
                "decisions": c["decisions"],
                "approved": c["approved"],
                "rejected": c["rejected"],
                "edited": c["edited"],
                "median_seconds": statistics.median(seconds[name]) if seconds[name] else None,
            }
            for name, c in sorted(per_editor.items())
        ],
        "approval_rate": rate(approved, rejected),
        "rejection_reasons": {reason: n for reason, n in reasons.most_common() if n > 0},
        "edit_distance": {
            "n": len(distances),
            "mean": statistics.fmean(distances) if distances else None,
            "median": statistics.median(distances) if distances else None,
        },
        "by_night": summarize("night", "run_id"),
        "by_model_version": summarize("model", "model_version"),
    }
