"""Model versions record their training method (full or LoRA) and trainable-parameter count;
drafts record the generation engine that wrote them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("method", sa.String(16), nullable=False, server_default="full"))
        batch.add_column(sa.Column("trainable_params", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(sa.Column("engine", sa.String(16), nullable=False, server_default="torch"))


def downgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("engine")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("trainable_params")
        batch.drop_column("method")
