"""Small reads the desk's filters need: model versions and nights (runs) to choose from."""

from __future__ import annotations

from sqlalchemy import select

from storage.db import Database
from storage.models import ModelVersion, Run

MAX_NIGHTS = 200  # the filter lists the latest nights; older ones stay reachable by typing the id in the URL


def model_versions(db: Database) -> list[tuple[int, str]]:
    with db.session() as session:
        return [
            (i, n)
            for i, n in session.execute(select(ModelVersion.id, ModelVersion.name).order_by(ModelVersion.id.desc()))
        ]


def nights(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(Run.id).order_by(Run.started_at.desc()).limit(MAX_NIGHTS)))


def model_version_name(db: Database, version_id: int) -> str:
    with db.session() as session:
        name = session.scalar(select(ModelVersion.name).where(ModelVersion.id == version_id))
        return name or f"#{version_id}"
