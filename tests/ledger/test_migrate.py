"""Migrating a ledger that already holds writebacks to the append-keyed list (0006): every row
keeps its id and values, and a redelivered event still finds the row it already has."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from writeback.ledger import Inserted, Ledger, NewWriteback
from writeback.ledger.migrate import alembic_config, migrate
from writeback.ledger.rows import Status, WritebackClass
from writeback.ledger.store import create_engine

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _old_row(n: int, status: str) -> dict:
    stamp = T0 + timedelta(minutes=n)
    return {
        "id": f"00000000-0000-5000-8000-{n:012d}", "account_id": "acct", "connection_id": "c1",
        "wb_class": "activity", "event_type": "activity", "event_id": f"ev-{n}", "recipient_key": f"r{n % 2}",
        "mailing_id": "m1", "occurred_at": stamp, "window_closes_at": T0, "next_attempt_at": None,
        "status": status, "attempts": 1 if status == "failed" else 0, "replay_count": 0,
        "error_code": "E" if status == "failed" else None, "error_message": None, "claimed_by": None,
        "source_topic": "t", "source_partition": 0, "source_offset": n, "payload": {"n": n},
        "created_at": stamp, "updated_at": stamp, "first_failed_at": None, "completed_at": None,
    }  # fmt: skip


def test_rows_stored_before_0006_keep_their_ids_values_and_order_and_are_not_inserted_again(database_url):
    engine = create_engine(database_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0005")
        old = sa.Table("writebacks", sa.MetaData(), autoload_with=conn)
        conn.execute(old.insert(), [_old_row(n, "failed" if n == 2 else "pending") for n in (3, 1, 2)])
    migrate(engine)
    engine.dispose()

    ledger = Ledger.connect(database_url)
    stored = ledger.get("00000000-0000-5000-8000-000000000002")
    assert stored is not None
    assert (stored["status"], stored["error_code"], stored["source_offset"]) == ("failed", "E", 2)
    assert json.loads(json.dumps(stored["payload"])) == {"n": 2}
    assert [r["id"][-1] for r in ledger.list(status=Status.FAILED)] == ["2"]
    with ledger.engine.connect() as conn:
        order = conn.execute(sa.text("SELECT event_id FROM writebacks ORDER BY seq")).scalars().all()
    assert order == ["ev-1", "ev-2", "ev-3"]  # arrival order, from created_at

    again = NewWriteback(
        id="00000000-0000-5000-8000-000000000003", account_id="acct", connection_id="c1",
        wb_class=WritebackClass.ACTIVITY, event_type="activity", event_id="ev-3", recipient_key="r1",
        occurred_at=T0 + timedelta(minutes=3), window_closes_at=T0, payload=json.dumps({"n": 3}),
    )  # fmt: skip
    assert ledger.insert([again], now=T0) == Inserted(0)
    claimed = ledger.claim_due("c1", "me", T0 + timedelta(hours=1), 10)
    assert [c.id[-1] for c in claimed] == ["1", "3"]  # r1 in occurred_at order; r0 has only a failed row
    ledger.close()
