"""The editors' desk: leases and priority on drafts, revisions, comments, editors, rejection
reasons, desk settings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
DEFAULT_REASONS = [
    ("off_topic", "Off topic: does not answer the prompt"),
    ("factual_error", "Factual error"),
    ("low_quality", "Low quality: incoherent, repetitive or unfinished"),
    ("copied", "Copies its sources"),
    ("unsafe", "Unsafe, private or offensive content"),
    ("style", "Wrong tone or style for the category"),
    ("other", "Other (say why in the note)"),
]


def upgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(sa.Column("category", sa.String(100)))
        batch.add_column(sa.Column("flags", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("approvals", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE drafts SET category = (SELECT category FROM prompts WHERE prompts.id = drafts.prompt_id)")
    _backfill_flags()
    op.create_index("ix_drafts_claim", "drafts", ["status", sa.text("priority DESC"), "created_at", "id"])
    op.create_index(
        "ix_drafts_claim_category", "drafts", ["status", "category", sa.text("priority DESC"), "created_at", "id"]
    )
    op.create_index("ix_drafts_claimed_by", "drafts", ["claimed_by", "status"])
    op.create_index("ix_drafts_status_category_created", "drafts", ["status", "category", "created_at", "id"])
    op.create_index("ix_drafts_created", "drafts", ["created_at", "id"])
    op.create_index("ix_drafts_run_created", "drafts", ["run_id", "created_at", "id"])
    op.create_index("ix_review_events_actor_at", "review_events", ["actor", "at"])
    op.create_index("ix_review_events_action_at", "review_events", ["action", "at"])

    op.create_table(
        "draft_revisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("draft_id", sa.Integer, sa.ForeignKey("drafts.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("editor", sa.String(100), nullable=False),
        sa.Column("based_on", sa.Integer, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.UniqueConstraint("draft_id", "version", name="uq_draft_revisions_version"),
    )
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("draft_id", sa.Integer, sa.ForeignKey("drafts.id"), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_comments_draft", "comments", ["draft_id", "at"])
    op.create_table(
        "editors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    reasons = op.create_table(
        "rejection_reasons",
        sa.Column("code", sa.String(40), primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.bulk_insert(reasons, [{"code": c, "label": label, "active": True} for c, label in DEFAULT_REASONS])
    settings = op.create_table(
        "desk_settings",
        sa.Column("key", sa.String(40), primary_key=True),
        sa.Column("value", sa.JSON),
    )
    op.bulk_insert(settings, [{"key": "required_reviews", "value": 1}, {"key": "lease_minutes", "value": 15}])


def _backfill_flags() -> None:
    """Drafts queued before this revision keep their flags in scores["flags"] only."""
    conn = op.get_bind()
    drafts = sa.table(
        "drafts", sa.column("id", sa.Integer), sa.column("scores", sa.JSON), sa.column("flags", sa.String)
    )
    for draft_id, scores in conn.execute(sa.select(drafts.c.id, drafts.c.scores)).all():
        flags = (scores or {}).get("flags") or []
        if flags:
            conn.execute(drafts.update().where(drafts.c.id == draft_id).values(flags=",".join(flags)[:200]))


def downgrade() -> None:
    for table in ("desk_settings", "rejection_reasons", "editors", "comments", "draft_revisions"):
        op.drop_table(table)
    for index in ("ix_review_events_action_at", "ix_review_events_actor_at"):
        op.drop_index(index, table_name="review_events")
    for index in (
        "ix_drafts_run_created",
        "ix_drafts_created",
        "ix_drafts_status_category_created",
        "ix_drafts_claimed_by",
        "ix_drafts_claim_category",
        "ix_drafts_claim",
    ):
        op.drop_index(index, table_name="drafts")
    with op.batch_alter_table("drafts") as batch:
        for column in ("approvals", "priority", "flags", "category"):
            batch.drop_column(column)
