"""Model registry: `models/<name>/` folders written by `save_pretrained` plus `model_versions` rows.

A version is trained into a staging folder, then registered: the row is inserted and the folder
moved to its final name in one step, so the registry never lists a half-written model.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from storage.db import Database
from storage.errors import NotFoundError
from storage.models import ModelVersion

log = logging.getLogger("draftflow.registry")


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    path: str
    tokenizer_id: str
    val_loss: float | None
    perplexity: float | None
    train_loss: float | None
    parent_id: int | None


def _info(row: ModelVersion) -> ModelInfo:
    return ModelInfo(
        id=row.id,
        name=row.name,
        path=row.path,
        tokenizer_id=row.tokenizer_id,
        val_loss=row.val_loss,
        perplexity=row.perplexity,
        train_loss=row.train_loss,
        parent_id=row.parent_id,
    )


def register_model_version(db: Database, staged_dir: Path, models_dir: Path, **fields: Any) -> ModelInfo:
    """Insert a `model_versions` row and move the staged folder to `models/<name>`, as one step: if
    the insert fails nothing moves, and if the commit fails the folder goes back to staging.

    A folder is never overwritten. `models/v0003` may already exist without a row here: another
    database shares this data home, or a crash came between the move and the commit. Either way it
    may be someone's model, so it is kept, and this version's folder gets a suffix (`v0003-1a2b3c4d`);
    the row records the real path.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    final: Path | None = None
    try:
        with db.transaction() as session:
            next_id = (session.scalar(select(func.max(ModelVersion.id))) or 0) + 1
            name = f"v{next_id:04d}"
            final = models_dir / name
            if final.exists():
                taken = final
                final = models_dir / f"{name}-{uuid.uuid4().hex[:8]}"
                log.warning(
                    "%s exists but is not a version in this database (another database shares this data home, "
                    "or a run crashed while registering it): kept as it is; %s goes to %s",
                    taken,
                    name,
                    final,
                )
            row = ModelVersion(id=next_id, name=name, path=str(final), **fields)
            session.add(row)
            session.flush()  # fails here (and rolls back) before anything moves on disk
            shutil.move(str(staged_dir), final)
            info = _info(row)
    except BaseException:
        if final is not None and final.exists() and not staged_dir.exists():
            shutil.move(str(final), staged_dir)  # not committed: the caller's staging folder again
        raise
    return info


def version_of_run(db: Database, run_id: str) -> ModelInfo | None:
    """The supervised version a run registered already (a retried or resumed run registers no second
    one); a preference-tuned version the same run made after it is not this one."""
    with db.session() as session:
        row = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.run_id == run_id, ModelVersion.preference.is_(None))
            .order_by(ModelVersion.id)
            .limit(1)
        ).first()
        return _info(row) if row else None


def latest_model_version(db: Database, excluding: Collection[int] = ()) -> ModelInfo | None:
    """The newest promoted version: what a run with no base model continues from (`excluding`: the
    candidates' own ids, when the latest they are measured against must be another version)."""
    with db.session() as session:
        row = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.promoted.is_(True), ModelVersion.id.not_in(list(excluding)))
            .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
            .limit(1)
        ).first()
        return _info(row) if row else None


def get_model_version(db: Database, name_or_id: str | int) -> ModelInfo:
    with db.session() as session:
        query = select(ModelVersion)
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            query = query.where(ModelVersion.id == int(name_or_id))
        else:
            query = query.where(ModelVersion.name == str(name_or_id))
        row = session.scalars(query).first()
        if row is None:
            raise NotFoundError(
                f"model version '{name_or_id}' is not in the registry "
                "(see `draftflow status` for the registered versions)"
            )
        return _info(row)


def set_promoted(db: Database, version_id: int, promoted: bool) -> None:
    """Record the evaluation's promotion decision on the version."""
    with db.transaction() as session:
        row = session.get(ModelVersion, version_id)
        if row is None:
            raise NotFoundError(f"model version {version_id} is not in the registry")
        row.promoted = promoted
