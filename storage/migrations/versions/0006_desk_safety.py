"""The editors' desk keeps its safety state in the database: server-side sessions (sign-out ends a
session everywhere), failed sign-ins (rate limit and lockout that hold across desk processes), an
audit log of sensitive actions (exports), guidelines per category, and the queue a claimed draft
came from and when (claims and releases no longer write history rows; a decision event
records when its editor took the draft).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(sa.Column("claimed_from", sa.String(16), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("review_events") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    # drafts claimed before this revision: their queue was in the note of their last claim event
    op.execute(
        "UPDATE drafts SET claimed_from = 'flagged' WHERE status = 'in_review' AND EXISTS ("
        "SELECT 1 FROM review_events e WHERE e.draft_id = drafts.id AND e.action = 'claim' "
        "AND e.note = 'from the flagged queue' AND e.id = (SELECT MAX(e2.id) FROM review_events e2 "
        "WHERE e2.draft_id = drafts.id AND e2.action = 'claim'))"
    )
    op.execute("UPDATE drafts SET claimed_from = 'pending' WHERE status = 'in_review' AND claimed_from IS NULL")
    op.create_table(
        "desk_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("editor", sa.String(100), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_desk_sessions_editor", "desk_sessions", ["editor"])
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sign_in_failures_name_at", "sign_in_failures", ["name", "at"])
    op.create_index("ix_sign_in_failures_address_at", "sign_in_failures", ["address", "at"])
    op.create_table(
        "desk_audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_desk_audit_at", "desk_audit", ["at"])
    op.create_table(
        "guidelines",
        sa.Column("category", sa.String(100), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("guidelines")
    op.drop_index("ix_desk_audit_at", "desk_audit")
    op.drop_table("desk_audit")
    op.drop_index("ix_sign_in_failures_address_at", "sign_in_failures")
    op.drop_index("ix_sign_in_failures_name_at", "sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_index("ix_desk_sessions_editor", "desk_sessions")
    op.drop_table("desk_sessions")
    with op.batch_alter_table("review_events") as batch:
        batch.drop_column("claimed_at")
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_from")
