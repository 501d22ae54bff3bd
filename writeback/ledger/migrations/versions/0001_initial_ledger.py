"""Initial ledger: writeback list, accounts, connections, subscriber state, leases.

Revision ID: 0001
Revises: 
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import writeback.ledger.tables

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('updated_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts'))
    )
    op.create_table('flush_leases',
    sa.Column('connection_id', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('expires_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('connection_id', name=op.f('pk_flush_leases'))
    )
    op.create_table('schedule_runs',
    sa.Column('connection_id', sa.String(length=64), nullable=False),
    sa.Column('wb_class', sa.String(length=16), nullable=False),
    sa.Column('last_fired_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('connection_id', 'wb_class', name=op.f('pk_schedule_runs'))
    )
    op.create_table('subscriber_state',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('recipient_key', sa.String(length=320), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('unsubscribe_source', sa.String(length=32), nullable=True),
    sa.Column('last_event_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'recipient_key', name=op.f('pk_subscriber_state'))
    )
    op.create_table('writebacks',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('connection_id', sa.String(length=64), nullable=False),
    sa.Column('wb_class', sa.String(length=16), nullable=False),
    sa.Column('event_type', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('recipient_key', sa.String(length=320), nullable=False),
    sa.Column('mailing_id', sa.String(length=64), nullable=True),
    sa.Column('occurred_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('window_closes_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.String(length=1000), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('source_topic', sa.String(length=249), nullable=True),
    sa.Column('source_partition', sa.Integer(), nullable=True),
    sa.Column('source_offset', sa.BigInteger(), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('first_failed_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'in_flight', 'completed', 'failed')", name=op.f('ck_writebacks_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_writebacks'))
    )
    with op.batch_alter_table('writebacks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_writebacks_account_id_recipient_key'), ['account_id', 'recipient_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_writebacks_connection_id_recipient_key_occurred_at'), ['connection_id', 'recipient_key', 'occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_writebacks_connection_id_status_window_closes_at'), ['connection_id', 'status', 'window_closes_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_writebacks_status_updated_at'), ['status', 'updated_at'], unique=False)

    op.create_table('connections',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', writeback.ledger.tables.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connections'))
    )
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connections_account_id'), ['account_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connections_account_id'))

    op.drop_table('connections')
    with op.batch_alter_table('writebacks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_writebacks_status_updated_at'))
        batch_op.drop_index(batch_op.f('ix_writebacks_connection_id_status_window_closes_at'))
        batch_op.drop_index(batch_op.f('ix_writebacks_connection_id_recipient_key_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_writebacks_account_id_recipient_key'))

    op.drop_table('writebacks')
    op.drop_table('subscriber_state')
    op.drop_table('schedule_runs')
    op.drop_table('flush_leases')
    op.drop_table('accounts')
