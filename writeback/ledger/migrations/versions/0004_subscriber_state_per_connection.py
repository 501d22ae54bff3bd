"""Subscriber state per (connection, identity) instead of per (account, recipient key), and
the subscriber events it was made from, so a repeated event id changes no state.

An opt-out made in one CRM must not refuse a resubscribe bound for another CRM, and a CRM-side
unsubscribe keyed by email must still match a resubscribe that carries the integration id.
Existing state is carried over to every connection of its account under the key it had, which
is what the old rule applied.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import writeback.ledger.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _state_table(name: str, pk: str) -> None:
    op.create_table(
        name,
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("unsubscribe_source", sa.String(length=32), nullable=True),
        sa.Column("unsubscribe_connection_id", sa.String(length=64), nullable=True),
        sa.Column("last_event_at", writeback.ledger.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "identity", name=pk),
    )


def upgrade() -> None:
    # through a scratch table: PostgreSQL keeps constraint names unique per schema
    _state_table("subscriber_state_carried", "pk_subscriber_state_carried")
    op.execute(
        "INSERT INTO subscriber_state_carried (connection_id, identity, status, unsubscribe_source, last_event_at) "
        "SELECT c.id, s.recipient_key, s.status, s.unsubscribe_source, s.last_event_at "
        "FROM subscriber_state s JOIN connections c ON c.account_id = s.account_id"
    )
    op.drop_table("subscriber_state")
    _state_table("subscriber_state", op.f("pk_subscriber_state"))
    op.execute("INSERT INTO subscriber_state SELECT * FROM subscriber_state_carried")
    op.drop_table("subscriber_state_carried")
    op.create_table(
        "subscriber_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_subscriber_events")),
    )
    op.execute(
        "INSERT INTO subscriber_events (event_id) SELECT DISTINCT event_id FROM writebacks "
        "WHERE event_type = 'subscriber'"
    )


def downgrade() -> None:
    """The per-account state cannot be rebuilt from per-connection state: it starts empty."""
    op.drop_table("subscriber_events")
    op.drop_table("subscriber_state")
    op.create_table(
        "subscriber_state",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("recipient_key", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("unsubscribe_source", sa.String(length=32), nullable=True),
        sa.Column("last_event_at", writeback.ledger.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "recipient_key", name=op.f("pk_subscriber_state")),
    )
