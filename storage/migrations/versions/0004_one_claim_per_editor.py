"""One claim per editor, enforced by the database: a partial unique index on the claimant of
in-review drafts. An editor holding several claims (possible before, with two concurrent claims on
PostgreSQL) keeps the newest; the others go back to their queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

IN_REVIEW = sa.text("status = 'in_review'")


def upgrade() -> None:
    op.execute(
        "UPDATE drafts SET status = CASE WHEN flags <> '' THEN 'flagged' ELSE 'pending' END, "
        "claimed_by = NULL, lease_expires_at = NULL "
        "WHERE status = 'in_review' AND id NOT IN "
        "(SELECT MAX(id) FROM drafts WHERE status = 'in_review' GROUP BY claimed_by)"
    )
    op.create_index(
        "uq_drafts_one_claim_per_editor",
        "drafts",
        ["claimed_by"],
        unique=True,
        sqlite_where=IN_REVIEW,
        postgresql_where=IN_REVIEW,
    )


def downgrade() -> None:
    op.drop_index("uq_drafts_one_claim_per_editor", table_name="drafts")
