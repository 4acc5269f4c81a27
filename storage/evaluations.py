"""Model evaluations and their drafts: written once per version (replaced when the set changes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select

from storage.db import Database
from storage.models import EvaluationDraft, ModelEvaluation


def save_evaluation(
    db: Database,
    version_id: int,
    eval_set: str,
    bits_per_byte: float | None,
    by_source: dict[str, Any],
    draft_metrics: dict[str, Any],
    seconds: float,
    drafts: Sequence[dict[str, Any]],
) -> ModelEvaluation:
    """The version's evaluation and drafts, in one transaction: an older evaluation of it goes."""
    with db.transaction() as session:
        session.execute(delete(EvaluationDraft).where(EvaluationDraft.model_version_id == version_id))
        session.execute(delete(ModelEvaluation).where(ModelEvaluation.model_version_id == version_id))
        row = ModelEvaluation(
            model_version_id=version_id,
            eval_set=eval_set,
            bits_per_byte=bits_per_byte,
            by_source=by_source,
            draft_metrics=draft_metrics,
            seconds=seconds,
        )
        session.add(row)
        session.add_all(EvaluationDraft(model_version_id=version_id, **d) for d in drafts)
        session.flush()
        return row


def evaluation_of(db: Database, version_id: int) -> ModelEvaluation | None:
    with db.session() as session:
        return session.scalar(select(ModelEvaluation).where(ModelEvaluation.model_version_id == version_id))


def evaluations(db: Database) -> dict[int, ModelEvaluation]:
    """Every stored evaluation by version id."""
    with db.session() as session:
        return {e.model_version_id: e for e in session.scalars(select(ModelEvaluation))}


def evaluation_drafts(db: Database, version_id: int) -> list[EvaluationDraft]:
    with db.session() as session:
        return list(
            session.scalars(
                select(EvaluationDraft)
                .where(EvaluationDraft.model_version_id == version_id)
                .order_by(EvaluationDraft.prompt_key, EvaluationDraft.seed)
            )
        )
