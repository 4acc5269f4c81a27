"""SQLAlchemy 2 ORM models of the drafts database.

The tables are created and changed by Alembic migrations (storage/migrations), never by
`create_all`: the models describe the schema, the migrations own it.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class DraftStatus(enum.StrEnum):
    GENERATED = "generated"  # written by generate, not yet checked and queued
    PENDING = "pending"  # in the review queue
    FLAGGED = "flagged"  # held by a draft check (copied, PII, ...): reviewed apart, never deleted
    IN_REVIEW = "in_review"  # claimed by an editor (lease)
    APPROVED = "approved"
    REJECTED = "rejected"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # nightly, or the stage a CLI command ran
    prefect_flow_run_id: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    corpus_fingerprint: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    owner: Mapped[str | None] = mapped_column(String(200))  # host:pid:start of the process running it


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)  # folder name, e.g. v0003
    path: Mapped[str] = mapped_column(Text)
    base: Mapped[str] = mapped_column(Text)  # "scratch", a hub id / path, or "version:v0002"
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"))
    tokenizer_id: Mapped[str] = mapped_column(String(64))
    corpus_fingerprint: Mapped[str | None] = mapped_column(String(64))
    tokens_fingerprint: Mapped[str | None] = mapped_column(String(64))
    hyperparams: Mapped[dict[str, Any]] = mapped_column(default=dict)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    perplexity: Mapped[float | None] = mapped_column(Float)
    tokens_seen: Mapped[int] = mapped_column(Integer, default=0)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    promoted: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    method: Mapped[str] = mapped_column(String(16), default="full")  # full | lora (an adapter over `base`)
    trainable_params: Mapped[int | None] = mapped_column(BigInteger)
    # a version made by preference tuning: method, pairs, what the trainer reported (None: supervised)
    preference: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)


class ModelEvaluation(Base):
    """One evaluation of a model version on the home's fixed evaluation set (one row a version)."""

    __tablename__ = "model_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), unique=True)
    eval_set: Mapped[str] = mapped_column(String(64))  # fingerprint of the held-out texts, prompts and seeds
    bits_per_byte: Mapped[float | None] = mapped_column(Float)
    by_source: Mapped[dict[str, Any]] = mapped_column(default=dict)  # source -> bits_per_byte, documents, bytes
    draft_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvaluationDraft(Base):
    """A draft written for the fixed evaluation prompts: kept to compare versions, never queued."""

    __tablename__ = "evaluation_drafts"
    __table_args__ = (
        UniqueConstraint("model_version_id", "prompt_key", "seed", name="uq_evaluation_drafts_version_prompt_seed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    prompt_key: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    new_tokens: Mapped[int] = mapped_column(Integer)
    stopped: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prompt(Base):
    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # source + prompt id: stable
    text: Mapped[str] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Draft(Base):
    __tablename__ = "drafts"
    __table_args__ = (
        UniqueConstraint("run_id", "prompt_id", "sample_index", name="uq_drafts_run_prompt_sample"),
        Index("ix_drafts_status_created", "status", "created_at"),
        # the claim's pick: by priority, then age, optionally within a category
        Index("ix_drafts_claim", "status", text("priority DESC"), "created_at", "id"),
        Index("ix_drafts_claim_category", "status", "category", text("priority DESC"), "created_at", "id"),
        Index("ix_drafts_claimed_by", "claimed_by", "status"),
        Index("ix_drafts_status_category_created", "status", "category", "created_at", "id"),  # filtered lists
        Index("ix_drafts_created", "created_at", "id"),  # the list of every state
        Index("ix_drafts_run_created", "run_id", "created_at", "id"),  # one night's drafts
        # one live claim per editor, enforced by the database on both backends
        Index(
            "uq_drafts_one_claim_per_editor",
            "claimed_by",
            unique=True,
            sqlite_where=text("status = 'in_review'"),
            postgresql_where=text("status = 'in_review'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    sample_index: Mapped[int] = mapped_column(Integer)
    original_text: Mapped[str] = mapped_column(Text)  # the model's text: never changed
    current_text: Mapped[str] = mapped_column(Text)  # what editors made of it
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)  # sampling parameters
    seed: Mapped[int] = mapped_column(Integer)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=DraftStatus.GENERATED)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)  # optimistic concurrency
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Copies of the prompt's category and the checks' flags, so that the queue filters on
    # indexed columns instead of a join or JSON at a million drafts.
    category: Mapped[str | None] = mapped_column(String(100))
    flags: Mapped[str] = mapped_column(String(200), default="")  # comma-joined check flags
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher is claimed first
    approvals: Mapped[int] = mapped_column(Integer, default=0)  # towards required_reviews
    engine: Mapped[str] = mapped_column(String(16), default="torch")  # the generation engine that wrote it
    claimed_from: Mapped[str | None] = mapped_column(String(16))  # the queue the last claim took it from
    claimed_at: Mapped[datetime | None]  # when the current (or last) claim was taken


class DraftRevision(Base):
    """Every saved text of a draft; revision 1 is the model's. Nothing is overwritten."""

    __tablename__ = "draft_revisions"
    __table_args__ = (UniqueConstraint("draft_id", "version", name="uq_draft_revisions_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    editor: Mapped[str] = mapped_column(String(100))
    based_on: Mapped[int] = mapped_column(Integer)  # the version the editor started from
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_draft", "draft_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    author: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Editor(Base):
    __tablename__ = "editors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, never the password
    role: Mapped[str] = mapped_column(String(16), default="editor")  # editor | admin
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RejectionReason(Base):
    __tablename__ = "rejection_reasons"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class DeskSetting(Base):
    """Desk-wide settings an admin changes (required_reviews, lease_minutes): JSON values."""

    __tablename__ = "desk_settings"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class ReviewEvent(Base):
    __tablename__ = "review_events"
    # indexes (draft, at), (actor, at), (action, at): created by the migrations

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]  # a decision: when its editor took the draft (time per draft)


class DeskSession(Base):
    """A signed-in desk session; the cookie carries its random id, the table its sha256 (`id`).

    Signing out sets `ended_at`, so a copy of the cookie is worthless afterwards.
    """

    __tablename__ = "desk_sessions"
    __table_args__ = (Index("ix_desk_sessions_editor", "editor"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    editor: Mapped[str] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class SignInFailure(Base):
    """One failed sign-in: the rate limit and lockout count these per account and per address."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        Index("ix_sign_in_failures_name_at", "name", "at"),
        Index("ix_sign_in_failures_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class DeskAudit(Base):
    """Sensitive desk actions (exports, reopened decisions): who, what and when."""

    __tablename__ = "desk_audit"
    __table_args__ = (Index("ix_desk_audit_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Guideline(Base):
    """An admin's guidance for reviewing one category ("*": every category), shown on the review screen."""

    __tablename__ = "guidelines"

    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
