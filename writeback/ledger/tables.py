"""The ledger's tables (SQLAlchemy Core): the writeback list and the state it depends on.

Core rather than ORM: ingest inserts rows in bulk and the flusher claims them with set-based
UPDATEs; there is no object graph to manage.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend; SQLite would otherwise hand back naive values."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

connections = sa.Table(
    "connections",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("settings", JSONDoc, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

def writeback_key(writeback_id: str) -> int:
    """The unique 64-bit key of a writeback id: a signed BIGINT, so both databases index it as
    a plain integer. Two ids sharing a key would be taken for one row: the chance that any pair
    among n rows does is about n²/2^65 (3 in a million at 10 million rows, 3 in 10,000 at 100
    million), and the ledger checks the stored id whenever an insert is skipped and logs such
    a pair as an error."""
    digest = hashlib.blake2b(writeback_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_WAITING = "status IN ('pending', 'in_flight')"
_FAILED = "status = 'failed'"

writebacks = sa.Table(
    # Rows are keyed by `seq`, an integer in arrival order, so ingest appends instead of
    # inserting into a B-tree at random. `id` is the writeback's public, deterministic id (the
    # CRMs' idempotency key); `key` is its 64-bit digest under the one unique index, which is
    # what makes a redelivered or republished event add nothing (see `store.writeback_key`).
    "writebacks",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("key", sa.BigInteger, nullable=False, unique=True),
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("connection_id", sa.String(64), nullable=False),
    sa.Column("wb_class", sa.String(16), nullable=False),
    sa.Column("event_type", sa.String(16), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("recipient_key", sa.String(320), nullable=False),
    sa.Column("mailing_id", sa.String(64)),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("window_closes_at", UTCDateTime),  # NULL: manual schedule, waits for send-activity
    sa.Column("next_attempt_at", UTCDateTime),  # backoff after a transient failure
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("replay_count", sa.Integer, nullable=False, server_default="0"),  # times replayed
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.String(1000)),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("source_topic", sa.String(249)),
    sa.Column("source_partition", sa.Integer),
    sa.Column("source_offset", sa.BigInteger),
    sa.Column("payload", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("first_failed_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.CheckConstraint(
        "status IN ('pending', 'in_flight', 'completed', 'failed')", name="status"
    ),
    # Partial indexes: a row leaves them when it is written, so they hold the backlog and the
    # failures, not the history. The claim walks the first in order and stops at its limit,
    # whatever the backlog; queries repeat the predicate verbatim so SQLite uses them.
    sa.Index(
        "ix_writebacks_waiting",
        "connection_id", "recipient_key", "occurred_at", "seq",
        sqlite_where=sa.text(_WAITING), postgresql_where=sa.text(_WAITING),
    ),
    sa.Index(
        "ix_writebacks_failed", "updated_at",
        sqlite_where=sa.text(_FAILED), postgresql_where=sa.text(_FAILED),
    ),
)

subscriber_state = sa.Table(
    # Per (connection, identity), so an opt-out made in one CRM never blocks another CRM's
    # writeback. A recipient is known by each identity its events carry (integration id, and
    # email lower-cased); a change is recorded under all of them.
    "subscriber_state",
    metadata,
    sa.Column("connection_id", sa.String(64), primary_key=True),
    sa.Column("identity", sa.String(320), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # subscribed | unsubscribed | bad_email
    sa.Column("unsubscribe_source", sa.String(32)),  # where the last unsubscribe came from
    sa.Column("unsubscribe_connection_id", sa.String(64)),  # the CRM connection, for CRM_SYNC
    sa.Column("last_event_at", UTCDateTime, nullable=False),
)

subscriber_events = sa.Table(
    # the subscriber events whose state changes were applied: an event id seen again (the same
    # event redelivered, or reused for other content) changes no state
    "subscriber_events",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
)

flush_leases = sa.Table(
    "flush_leases",
    metadata,
    sa.Column("connection_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64)),
    sa.Column("expires_at", UTCDateTime),
)

schedule_runs = sa.Table(
    "schedule_runs",
    metadata,
    sa.Column("connection_id", sa.String(64), primary_key=True),
    sa.Column("wb_class", sa.String(16), primary_key=True),
    sa.Column("last_fired_at", UTCDateTime, nullable=False),
)

# Community lists (seed 003, inbound): target groups made from List Builder lists, their members,
# the membership events a sync committed but has not yet seen acknowledged by the broker, and
# the campaigns whose groups are synced hourly.

community_folders = sa.Table(
    "community_folders",
    metadata,
    sa.Column("connection_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

community_groups = sa.Table(
    "community_groups",
    metadata,
    sa.Column("connection_id", sa.String(64), primary_key=True),
    sa.Column("list_key", sa.String(64), primary_key=True),
    sa.Column("list_name", sa.String(400), nullable=False),
    sa.Column("group_name", sa.String(400), nullable=False),
    sa.Column("in_community", sa.Boolean, nullable=False),  # false: gone from List Builder, kept as it was
    sa.Column("discovered_at", UTCDateTime, nullable=False),
    sa.Column("last_synced_at", UTCDateTime),  # NULL: never synced
    sa.Column("members", sa.Integer),  # community members at the last sync
    sa.Column("subscribers", sa.Integer),  # of them, target-group subscribers
    sa.Column("reconciliation", JSONDoc),  # why the two differ: a count per cause
    sa.Column("last_error", sa.String(1000)),  # the last failed sync's reason, cleared by a good one
)

community_memberships = sa.Table(
    "community_memberships",
    metadata,
    sa.Column("connection_id", sa.String(64), primary_key=True),
    sa.Column("list_key", sa.String(64), primary_key=True),
    sa.Column("legacy_contact_key", sa.String(320), primary_key=True),  # = Remote ID
    sa.Column("email", sa.String(320)),
    sa.Column("standing", sa.String(24), nullable=False),  # subscriber or why not
)

community_outbox = sa.Table(
    "community_outbox",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("connection_id", sa.String(64), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),  # publish order within a sync
    sa.Column("payload", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

community_campaigns = sa.Table(
    "community_campaigns",
    metadata,
    sa.Column("connection_id", sa.String(64), primary_key=True),
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("list_key", sa.String(64), primary_key=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
)
