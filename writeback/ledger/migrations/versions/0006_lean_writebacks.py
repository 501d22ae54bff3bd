"""The writeback list keyed for appends: an integer `seq` in arrival order as the primary key, the
public text id kept as a plain column, its 64-bit digest (`key`) under the one unique index, and
partial indexes that hold only the backlog (claims) and the failures (`list --status failed`).

Ingest paid for a random 36-character text key and three full indexes on every row; see issue 17
and bench/results/ingest.md. Existing rows are copied in `created_at` order, their keys computed
by the ledger's own function so redeliveries of old events still find them.

Revision ID: 0006
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import writeback.ledger.tables
from writeback.ledger.tables import writeback_key

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WAITING = "status IN ('pending', 'in_flight')"
_FAILED = "status = 'failed'"
_COPIED = (
    "id", "account_id", "connection_id", "wb_class", "event_type", "event_id", "recipient_key",
    "mailing_id", "occurred_at", "window_closes_at", "next_attempt_at", "status", "attempts",
    "replay_count", "error_code", "error_message", "claimed_by", "source_topic", "source_partition",
    "source_offset", "payload", "created_at", "updated_at", "first_failed_at", "completed_at",
)  # fmt: skip


def _columns() -> list[sa.Column]:
    stamp = writeback.ledger.tables.UTCDateTime(timezone=True)
    return [
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("wb_class", sa.String(length=16), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("recipient_key", sa.String(length=320), nullable=False),
        sa.Column("mailing_id", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", stamp, nullable=False),
        sa.Column("window_closes_at", stamp, nullable=True),
        sa.Column("next_attempt_at", stamp, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("replay_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=1000), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("source_topic", sa.String(length=249), nullable=True),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("updated_at", stamp, nullable=False),
        sa.Column("first_failed_at", stamp, nullable=True),
        sa.Column("completed_at", stamp, nullable=True),
    ]


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":  # its primary key's name is an index name, unique per schema
        op.execute("ALTER TABLE writebacks RENAME CONSTRAINT pk_writebacks TO pk_writebacks_before_0006")
    op.create_table(
        "writebacks_lean",
        *_columns(),
        sa.CheckConstraint("status IN ('pending', 'in_flight', 'completed', 'failed')", name="ck_writebacks_status"),
        sa.PrimaryKeyConstraint("seq", name="pk_writebacks"),
        sa.UniqueConstraint("key", name="uq_writebacks_key"),
    )
    # typed, so payloads and instants are read and written as the ledger stores them
    old = sa.Table("writebacks", sa.MetaData(), *(c for c in _columns() if c.name in _COPIED))
    new = sa.Table("writebacks_lean", sa.MetaData(), *_columns())
    rows = conn.execute(sa.select(*old.c).order_by(old.c.created_at, old.c.id).execution_options(yield_per=5000))
    for part in rows.mappings().partitions(5000):
        conn.execute(new.insert(), [{**r, "key": writeback_key(r["id"])} for r in part])
    op.drop_table("writebacks")
    op.rename_table("writebacks_lean", "writebacks")
    if conn.dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE writebacks_lean_seq_seq RENAME TO writebacks_seq_seq")
    op.create_index(
        "ix_writebacks_waiting", "writebacks", ["connection_id", "recipient_key", "occurred_at", "seq"],
        sqlite_where=sa.text(_WAITING), postgresql_where=sa.text(_WAITING),
    )
    op.create_index(
        "ix_writebacks_failed", "writebacks", ["updated_at"],
        sqlite_where=sa.text(_FAILED), postgresql_where=sa.text(_FAILED),
    )


def downgrade() -> None:
    raise NotImplementedError("the lean writeback list is not migrated back; restore a backup")
