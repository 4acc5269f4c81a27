"""Every model version is evaluated the same way: bits per byte on a fixed held-out split (per
source), drafts for a fixed prompt set with fixed seeds (stored apart, never queued) and their
metrics. A version made by preference tuning records how (method, pairs, the trainer's metrics).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("preference", sa.JSON(), nullable=True))
    op.create_table(
        "model_evaluations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False, unique=True),
        sa.Column("eval_set", sa.String(64), nullable=False),
        sa.Column("bits_per_byte", sa.Float(), nullable=True),
        sa.Column("by_source", sa.JSON(), nullable=False),
        sa.Column("draft_metrics", sa.JSON(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "evaluation_drafts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("prompt_key", sa.String(200), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("new_tokens", sa.Integer(), nullable=False),
        sa.Column("stopped", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_version_id", "prompt_key", "seed", name="uq_evaluation_drafts_version_prompt_seed"),
    )


def downgrade() -> None:
    op.drop_table("evaluation_drafts")
    op.drop_table("model_evaluations")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("preference")
