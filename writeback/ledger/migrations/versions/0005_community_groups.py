"""Community target groups (seed 003): the "Online Community" folder per connection, target
groups made from List Builder lists with their last sync and reconciled counts, memberships keyed
by Legacy Contact Key, the outbox of membership events not yet acknowledged by the broker, and
the running campaigns whose groups are synced hourly.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import writeback.ledger.tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UTC = writeback.ledger.tables.UTCDateTime
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "community_folders",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_community_folders")),
    )
    op.create_table(
        "community_groups",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("list_key", sa.String(length=64), nullable=False),
        sa.Column("list_name", sa.String(length=400), nullable=False),
        sa.Column("group_name", sa.String(length=400), nullable=False),
        sa.Column("in_community", sa.Boolean(), nullable=False),
        sa.Column("discovered_at", _UTC(timezone=True), nullable=False),
        sa.Column("last_synced_at", _UTC(timezone=True), nullable=True),
        sa.Column("members", sa.Integer(), nullable=True),
        sa.Column("subscribers", sa.Integer(), nullable=True),
        sa.Column("reconciliation", _JSON, nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("connection_id", "list_key", name=op.f("pk_community_groups")),
    )
    op.create_table(
        "community_memberships",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("list_key", sa.String(length=64), nullable=False),
        sa.Column("legacy_contact_key", sa.String(length=320), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("standing", sa.String(length=24), nullable=False),
        sa.PrimaryKeyConstraint(
            "connection_id", "list_key", "legacy_contact_key", name=op.f("pk_community_memberships")
        ),
    )
    op.create_table(
        "community_outbox",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_community_outbox")),
    )
    op.create_index(op.f("ix_community_outbox_connection_id"), "community_outbox", ["connection_id"])
    op.create_table(
        "community_campaigns",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("list_key", sa.String(length=64), nullable=False),
        sa.Column("started_at", _UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "campaign_id", "list_key", name=op.f("pk_community_campaigns")),
    )


def downgrade() -> None:
    op.drop_table("community_campaigns")
    op.drop_index(op.f("ix_community_outbox_connection_id"), table_name="community_outbox")
    op.drop_table("community_outbox")
    op.drop_table("community_memberships")
    op.drop_table("community_groups")
    op.drop_table("community_folders")
