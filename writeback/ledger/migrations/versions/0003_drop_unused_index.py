"""Drop the writebacks (account_id, recipient_key) index: no query reads it (subscriber state
has its own table), and every ingested row paid for a random insert into it.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("writebacks") as batch:
        batch.drop_index("ix_writebacks_account_id_recipient_key")


def downgrade() -> None:
    with op.batch_alter_table("writebacks") as batch:
        batch.create_index("ix_writebacks_account_id_recipient_key", ["account_id", "recipient_key"])
