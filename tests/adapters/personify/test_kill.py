"""Issue 15: a kill -9 during a Personify flush, then a restart, leaves every row exactly once.

`writeback serve` flushes 160 customers' unsubscribe → resubscribe (→ unsubscribe) into a
PostgreSQL Personify database in `both` mode, over the real broker, a fresh chunk of customers
published before each start, and is SIGKILLed six times while a Personify transaction is open (seeded random delays; every other kill waits for the
COMMIT), then a last instance runs until
every ledger row is completed. Kills land in two places:
- inside the batch's transaction (planning, savepoints): PostgreSQL rolls it back;
- at COMMIT: a deferred trigger on WRITEBACK_APPLIED sleeps a few ms per applied writeback
  while the server commits, so a kill there loses the answer but not the commit (PostgreSQL
  commits for a client that is gone), and the ledger still holds the rows in flight. The next
  holder requeues them and must find them in WRITEBACK_APPLIED, not write them again.
The trigger is test DDL on the test database; the adapter creates nothing but its side table,
which the test creates first (with the same definition) to attach the trigger.

Exactly once: each event's CUS_ACTIVITY row exactly once, each customer's CUS_OPT_IN periods as
one clean run leaves them (the staff period ended at the unsubscribe, one period opened at the
resubscribe, ended by the second unsubscribe where there is one), one WRITEBACK_APPLIED row per
writeback.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from writeback_dev import personify_schema as ps

from tests import test_service
from tests.builders import wait_for
from tests.test_end_to_end import sub_event
from tests.test_service import by_status, publish, release_all_windows
from writeback.adapters.personify import client
from writeback.ingest.consume import writeback_id
from writeback.ledger import Ledger

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

service = test_service.service

CUSTOMERS = 160
KILLS = 6
ZONE = ZoneInfo("America/New_York")
T = datetime(2026, 1, 15, 19, 0, 0, tzinfo=UTC)
STAFF_BEGIN = datetime(2025, 1, 1)
GROUP = {"kind": "GROUP", "id": "g-12", "name": "Advocacy"}
UNSUB_TEXT = 'Unsubscribed from group "Advocacy" (g-12) via mailing link'
RESUB_TEXT = 'Resubscribed to group "Advocacy" (g-12) via mailing link'

SLOW_COMMIT = """
CREATE FUNCTION dbo.slow_commit() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(0.01); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON dbo."WRITEBACK_APPLIED"
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION dbo.slow_commit();
"""


def local(at: datetime) -> datetime:
    return at.astimezone(ZONE).replace(tzinfo=None)


def test_sigkills_during_personify_flushes_leave_every_row_exactly_once(
    service, kafka, schema_registry, postgres_database, tmp_path: Path
) -> None:
    instances, topics = service
    engine = ps.create(postgres_database)
    ps.add_codes(engine, ps.INTEREST_AREA_TYPE, ["ADVOCACY"])
    ps.add_codes(engine, ps.ACTIVITY_TYPE, ["UNSUBSCRIBE", "SUBSCRIBE"])
    client.ensure_applied_table(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(SLOW_COMMIT)

    customers = [f"000{100_000 + i}" for i in range(CUSTOMERS)]
    events, expected_opt_ins, expected_activities = [], {}, Counter()
    chunks: list[list] = [[] for _ in range(KILLS + 1)]  # a fresh chunk of customers per instance
    for i, cid in enumerate(customers):
        first = len(events)
        ps.add_customer(engine, cid)
        ps.add_opt_in(engine, cid, "ADVOCACY", STAFF_BEGIN)
        recipient = {"integration_id": cid, "email": f"c{i}@example.org"}
        unsub, resub, again = (T + timedelta(hours=h, seconds=i) for h in (0, 1, 2))
        events += [sub_event("UNSUBSCRIBE", recipient, unsub, scope=GROUP), sub_event("RESUBSCRIBE", recipient, resub, scope=GROUP)]
        expected_activities[(cid, "UNSUBSCRIBE", local(unsub), UNSUB_TEXT)] += 1
        expected_activities[(cid, "SUBSCRIBE", local(resub), RESUB_TEXT)] += 1
        second_end = None
        if i % 3 == 0:  # unsubscribe → resubscribe → unsubscribe: two closed periods, in order
            events.append(sub_event("UNSUBSCRIBE", recipient, again, scope=GROUP))
            expected_activities[(cid, "UNSUBSCRIBE", local(again), UNSUB_TEXT)] += 1
            second_end = local(again)
        chunks[i % len(chunks)] += events[first:]
        expected_opt_ins[cid] = [
            (cid, "INTEREST_AREA", "ADVOCACY", STAFF_BEGIN, local(unsub), None),
            (cid, "INTEREST_AREA", "ADVOCACY", local(resub), second_end, None),
        ]

    url = sa.make_url(postgres_database)
    bare = sa.URL.create(url.drivername, host=url.host, port=url.port, database=url.database).render_as_string()
    settings = tmp_path / "settings.toml"
    settings.write_text(
        '[[accounts]]\nid = "acme"\ntime_zone = "America/New_York"\n'
        '[[accounts.connections]]\nid = "acme-ps"\nkind = "personify"\n'
        f'crm = {{ personify_mode = "both", database_url = "{bare}", username = "{url.username}", '
        'manage_unsubscribe = { group = { "g-12" = "ADVOCACY" } } }\n'
    )
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    instances.env |= {
        "WRITEBACK_DATABASE_URL": ledger_url,
        "WRITEBACK_SETTINGS_FILE": str(settings),
        "WRITEBACK_INGEST_BATCH_SIZE": "15",  # ingest trickles in: the flush runs over many batches
        "WRITEBACK_INSTANCE_ID": "serve-kill",  # static membership: a restart gets its partitions back at once
    }
    ledger = Ledger.connect(ledger_url)
    stop = threading.Event()

    def keep_windows_released() -> None:
        while not stop.wait(0.3):
            try:
                release_all_windows(ledger, ["acme-ps"])
            except Exception:  # noqa: BLE001, S110 - the ledger may be locked or not yet migrated
                pass

    def personify_backend() -> tuple[str, str, str] | None:
        """What serve's open transaction on the Personify database is doing, if one is open."""
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT state, coalesce(wait_event, ''), left(query, 40) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
                )
            ).first()
        return None if row is None else tuple(row)

    releaser = threading.Thread(target=keep_windows_released)
    releaser.start()
    rng = random.Random(15)
    landed: list[tuple[str, str, str] | None] = []
    try:
        for chunk in chunks[:-1]:
            publish(kafka, schema_registry, topics, chunk)
            proc = instances.start()
            at_commit = len(landed) % 2 == 1  # every other kill waits for the COMMIT itself
            deadline = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < deadline:
                backend = personify_backend()
                if backend is not None and (not at_commit or backend[2].startswith("COMMIT")):
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.05 if at_commit else 0.5))
            landed.append(personify_backend())
            proc.kill()  # SIGKILL: no rollback by the client, no ledger update, lease left behind
            proc.wait(10)
            # its backend may go on committing a moment: the next instance's kill must be its own
            wait_for(lambda: personify_backend() is None, 30, "the killed instance's transaction to end")
        publish(kafka, schema_registry, topics, chunks[-1])
        instances.start()
        settled = lambda: sum(by_status(ledger)[s] for s in ("completed", "failed")) == len(events)
        try:
            wait_for(settled, 150, "recovery")
        except AssertionError:
            raise AssertionError(f"recovery stalled at {by_status(ledger)}: {instances.output()[-3000:]}") from None
    finally:
        stop.set()
        releaser.join()
    instances.stop_all()
    print("Personify backend at each kill:", landed)

    try:
        in_flush = [b for b in landed if b is not None]
        assert len(in_flush) >= KILLS // 2, f"too few kills landed in a Personify transaction: {landed}"
        assert any(b[2].startswith("COMMIT") for b in in_flush), f"no kill landed at a COMMIT: {landed}"

        activities = Counter(ps.activities(engine))
        twice = {row: n for row, n in activities.items() if n > 1}
        assert not twice, f"CUS_ACTIVITY rows written more than once: {list(twice.items())[:5]}"
        assert activities == expected_activities
        assert by_status(ledger) == {"completed": len(events)}

        periods: dict[str, list[tuple]] = {}
        for row in ps.opt_ins(engine):
            periods.setdefault(row[0], []).append(row)
        for cid in customers:
            assert sorted(periods.get(cid, []), key=lambda r: r[3]) == expected_opt_ins[cid], cid
        assert len(periods) == CUSTOMERS

        with engine.connect() as conn:
            applied = Counter(conn.scalars(sa.select(client.applied.c.WRITEBACK_ID)))
        assert applied == Counter(writeback_id(e.event_id, "acme-ps") for e in events)
    finally:
        ledger.close()
        engine.dispose()
