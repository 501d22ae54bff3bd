"""Replay count on writebacks, so a dead letter that fails again says how often it was replayed.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("writebacks") as batch:
        batch.add_column(sa.Column("replay_count", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("writebacks") as batch:
        batch.drop_column("replay_count")
