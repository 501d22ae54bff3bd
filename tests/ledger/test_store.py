"""The writeback list: nothing doubled on insert, nothing claimed twice, order per recipient."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from writeback.ledger import Inserted, NewWriteback, RowResult, StateChange
from writeback.ledger.rows import Status, WritebackClass
from writeback.ledger.tables import metadata

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def row(n: int, *, recipient: str = "r1", closes: datetime | None = T0, minutes: int = 0,
        connection: str = "c1", mailing: str | None = None, payload: dict | None = None) -> NewWriteback:  # fmt: skip
    return NewWriteback(
        id=f"wb-{connection}-{n}",
        account_id="acct",
        connection_id=connection,
        wb_class=WritebackClass.SUBSCRIBER,
        event_type="subscriber",
        event_id=f"ev-{n}",
        recipient_key=recipient,
        occurred_at=T0 + timedelta(minutes=minutes),
        window_closes_at=closes,
        payload=json.dumps(payload or {"n": n}),
        mailing_id=mailing,
    )


def test_inserting_the_same_event_twice_adds_one_row(ledger):
    assert ledger.insert([row(1), row(2)], now=T0) == Inserted(2)
    assert ledger.insert([row(1), row(2), row(3)], now=T0) == Inserted(1)
    assert ledger.counts() == {("c1", "pending"): 3}


def test_an_event_id_reused_for_other_content_keeps_the_first_and_is_counted(ledger):
    assert ledger.insert([row(1), row(2)], now=T0) == Inserted(2)
    again = [row(1), row(2, payload={"n": 2, "action": "RESUBSCRIBE"})]
    assert ledger.insert(again, now=T0) == Inserted(0, conflicting=1)
    assert json.loads(json.dumps(ledger.get("wb-c1-2")["payload"])) == {"n": 2}
    # within one batch too: the first of two rows with one id is kept
    twice = [row(3), row(3, payload={"n": "other"})]
    assert ledger.insert(twice, now=T0) == Inserted(1, conflicting=1)


def test_the_migrations_build_exactly_the_tables_the_code_declares(ledger):
    with ledger.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_an_inserted_row_reads_back_with_every_value_it_was_given(ledger):
    """Ingest hands rows to the driver itself, so the stored form is checked here: instants
    in any offset come back as the same UTC instant, to the microsecond."""
    plus_two = timezone(timedelta(hours=2))
    given = NewWriteback(
        id="wb-1", account_id="acct", connection_id="c1", wb_class=WritebackClass.ACTIVITY,
        event_type="activity", event_id="ev-1", recipient_key="r1",
        occurred_at=datetime(2026, 3, 8, 16, 30, 1, 123456, tzinfo=plus_two),
        window_closes_at=datetime(2026, 3, 9, 0, 0, tzinfo=UTC),
        payload=json.dumps({"subcode": "Opened", "mailing": {"mailing_id": "m1"}}),
        mailing_id="m1", source_topic="t", source_partition=3, source_offset=2**40,
    )  # fmt: skip
    now = datetime(2026, 3, 8, 14, 31, 0, 5, tzinfo=UTC)
    assert ledger.insert([given], now=now) == Inserted(1)
    stored = ledger.get("wb-1")
    assert stored is not None
    assert stored["occurred_at"] == datetime(2026, 3, 8, 14, 30, 1, 123456, tzinfo=UTC)
    assert stored["window_closes_at"] == given.window_closes_at
    assert stored["created_at"] == stored["updated_at"] == now
    assert stored["payload"] == {"subcode": "Opened", "mailing": {"mailing_id": "m1"}}
    assert (stored["status"], stored["attempts"], stored["replay_count"]) == ("pending", 0, 0)
    assert (stored["source_topic"], stored["source_partition"], stored["source_offset"]) == ("t", 3, 2**40)
    assert stored["mailing_id"] == "m1" and stored["wb_class"] == "activity"
    # comparisons against the stored instants are exact: due at its close, not a microsecond before
    closes = given.window_closes_at
    assert ledger.claim_due("c1", "me", closes - timedelta(microseconds=1), 10) == []
    assert ledger.acquire_lease("c1", "me", closes, LEASE)
    assert [w.id for w in ledger.claim_due("c1", "me", closes, 10)] == ["wb-1"]


def test_a_naive_instant_is_refused_rather_than_guessed(ledger):
    naive = NewWriteback(**{**{f: getattr(row(1), f) for f in NewWriteback.__slots__}, "occurred_at": datetime(2026, 3, 8)})
    with pytest.raises(ValueError, match="naive datetime"):
        ledger.insert([naive], now=T0)
    assert ledger.counts() == {}


def test_only_rows_whose_window_has_closed_are_claimed(ledger):
    ledger.insert([row(1), row(2, closes=T0 + timedelta(minutes=10), recipient="r2")], now=T0)
    assert ledger.acquire_lease("c1", "me", T0, LEASE)
    claimed = ledger.claim_due("c1", "me", T0, limit=10)
    assert [w.id for w in claimed] == ["wb-c1-1"]
    assert claimed[0].payload == {"n": 1}
    assert ledger.get("wb-c1-1")["status"] == "in_flight"
    assert ledger.get("wb-c1-2")["status"] == "pending"


def test_manual_windows_wait_for_send_activity_and_can_target_one_mailing(ledger):
    ledger.insert(
        [row(1, closes=None, mailing="m1"), row(2, closes=None, mailing="m2", recipient="r2")],
        now=T0,
    )
    ledger.acquire_lease("c1", "me", T0, LEASE)
    assert ledger.claim_due("c1", "me", T0 + timedelta(days=30), limit=10) == []
    assert ledger.close_windows("c1", T0, mailing_id="m2") == 1
    assert [w.id for w in ledger.claim_due("c1", "me", T0, limit=10)] == ["wb-c1-2"]


def test_claims_follow_occurred_at_per_recipient_and_never_overtake_a_waiting_row(ledger):
    ledger.insert([row(1, minutes=5), row(2, minutes=1), row(3, minutes=9)], now=T0)
    ledger.acquire_lease("c1", "me", T0, LEASE)
    claimed = ledger.claim_due("c1", "me", T0, limit=10)
    assert [w.id for w in claimed] == ["wb-c1-2", "wb-c1-1", "wb-c1-3"]
    # the earliest goes into backoff; the later two must wait behind it
    later = T0 + timedelta(minutes=5)
    ledger.record(
        [
            RowResult("wb-c1-2", Status.PENDING, "UNABLE_TO_LOCK_ROW", "locked", later),
            RowResult("wb-c1-1", Status.PENDING, "HELD", "held", None),
            RowResult("wb-c1-3", Status.PENDING, "HELD", "held", None),
        ],
        "me",
        T0,
    )
    assert ledger.claim_due("c1", "me", T0 + timedelta(minutes=1), limit=10) == []
    assert [w.id for w in ledger.claim_due("c1", "me", later, limit=10)] == [
        "wb-c1-2",
        "wb-c1-1",
        "wb-c1-3",
    ]


def test_a_connection_has_one_flusher_at_a_time_and_a_new_one_requeues_abandoned_rows(ledger):
    ledger.insert([row(1), row(2, recipient="r2")], now=T0)
    assert ledger.acquire_lease("c1", "a", T0, LEASE)
    assert not ledger.acquire_lease("c1", "b", T0 + timedelta(seconds=10), LEASE)
    assert len(ledger.claim_due("c1", "a", T0, limit=1)) == 1
    # "a" dies holding one row in flight; once its lease expires "b" takes over
    assert ledger.acquire_lease("c1", "b", T0 + timedelta(seconds=31), LEASE)
    reclaimed = ledger.claim_due("c1", "b", T0 + timedelta(seconds=31), limit=10)
    assert sorted(w.id for w in reclaimed) == ["wb-c1-1", "wb-c1-2"]


def test_a_holder_starting_a_flush_requeues_its_own_unrecorded_claims_and_a_renewal_keeps_them(ledger):
    ledger.insert([row(1), row(2, recipient="r2")], now=T0)
    assert ledger.acquire_lease("c1", "me", T0, LEASE, starting=True)
    assert len(ledger.claim_due("c1", "me", T0, limit=1)) == 1
    assert ledger.acquire_lease("c1", "me", T0, LEASE)  # renewed mid-flush: the claim stands
    assert ledger.counts() == {("c1", "in_flight"): 1, ("c1", "pending"): 1}
    # that pass could not record (the database went away) and ended; the next one starts afresh
    assert ledger.acquire_lease("c1", "me", T0 + timedelta(seconds=5), LEASE, starting=True)
    assert ledger.counts() == {("c1", "pending"): 2}


def test_released_claims_go_back_to_pending_as_they_were(ledger):
    ledger.insert([row(1), row(2, recipient="r2")], now=T0)
    ledger.acquire_lease("c1", "me", T0, LEASE)
    ids = [w.id for w in ledger.claim_due("c1", "me", T0, limit=10)]
    assert ledger.release(ids, "someone-else", T0) == 0
    assert ledger.release(ids, "me", T0) == 2
    assert all(ledger.get(i)["status"] == "pending" and ledger.get(i)["attempts"] == 0 for i in ids)
    assert [w.id for w in ledger.claim_due("c1", "me", T0, limit=10)] == ids


def test_outcomes_are_recorded_only_by_the_claim_holder(ledger):
    ledger.insert([row(1), row(2, recipient="r2")], now=T0)
    ledger.acquire_lease("c1", "me", T0, LEASE)
    ledger.claim_due("c1", "me", T0, limit=10)
    ledger.record([RowResult("wb-c1-1", Status.COMPLETED)], "someone-else", T0)
    assert ledger.get("wb-c1-1")["status"] == "in_flight"
    ledger.record(
        [
            RowResult("wb-c1-1", Status.COMPLETED),
            RowResult("wb-c1-2", Status.FAILED, "INVALID_CROSS_REFERENCE_KEY", "unknown id"),
        ],
        "me",
        T0,
    )
    done, failed = ledger.get("wb-c1-1"), ledger.get("wb-c1-2")
    assert (done["status"], done["attempts"], done["completed_at"]) == ("completed", 1, T0)
    assert (failed["status"], failed["error_code"]) == ("failed", "INVALID_CROSS_REFERENCE_KEY")
    assert failed["first_failed_at"] == T0
    assert [r["id"] for r in ledger.list(status=Status.FAILED)] == ["wb-c1-2"]
    assert ledger.requeue(["wb-c1-2", "wb-c1-1"], T0) == 1
    assert ledger.get("wb-c1-2")["status"] == "pending"


def change(n: int, status: str, source: str | None = None, by: str | None = None, *, minutes: int = 0,
           connection: str = "c1", known_as: tuple[str, ...] = ("r1",)) -> StateChange:  # fmt: skip
    return StateChange(f"ev-{n}", connection, known_as, status, T0 + timedelta(minutes=minutes), source, by)


def state(ledger, connection: str = "c1", identity: str = "r1") -> tuple | None:
    found = ledger.subscribers([(connection, identity)]).get((connection, identity))
    return (found["status"], found["unsubscribe_source"], found["unsubscribe_connection_id"]) if found else None


def test_subscriber_state_keeps_the_latest_event_whatever_the_arrival_order(ledger):
    ledger.insert([], [change(1, "unsubscribed", "CRM_SYNC", "c1", minutes=60)], now=T0)
    ledger.insert([], [change(2, "subscribed")], now=T0)
    assert state(ledger) == ("unsubscribed", "CRM_SYNC", "c1")


def test_subscriber_state_is_kept_per_connection_and_under_every_identity(ledger):
    both = change(1, "unsubscribed", "CRM_SYNC", "c1", known_as=("0031x", "pat@example.org"))
    ledger.insert([], [both, change(1, "subscribed", connection="c2")], now=T0)
    assert state(ledger, "c1", "0031x") == state(ledger, "c1", "pat@example.org") == ("unsubscribed", "CRM_SYNC", "c1")
    assert state(ledger, "c2", "r1") == ("subscribed", None, None)
    assert state(ledger, "c2", "0031x") is None


def test_a_repeated_event_id_changes_no_state_even_with_other_content(ledger):
    ledger.insert([row(1)], [change(1, "unsubscribed", "MAILING_LINK")], now=T0)
    impostor = change(1, "unsubscribed", "CRM_SYNC", "c1", minutes=5)
    assert ledger.insert([row(1, payload={"other": True})], [impostor], now=T0) == Inserted(0, conflicting=1)
    assert state(ledger) == ("unsubscribed", "MAILING_LINK", None)
    # nor when both arrive in one batch: the first event, and its state, are kept
    pair = [change(2, "subscribed", minutes=10), change(2, "unsubscribed", "CRM_SYNC", minutes=20)]
    ledger.insert([], pair, now=T0)
    assert state(ledger) == ("subscribed", "MAILING_LINK", None)


def test_an_event_id_another_instance_is_storing_at_that_moment_is_taken_once_without_an_error(ledger, database_url):
    """Two instances storing the same event id at once (published twice, consumed from two
    partitions): the one whose insert lands first applies its state, the other adds nothing."""
    from writeback.ledger import Ledger
    from writeback.ledger.tables import subscriber_events

    other = Ledger.connect(database_url)
    done: dict[str, object] = {}

    def store() -> None:
        try:
            done["inserted"] = ledger.insert([], [change(1, "unsubscribed", "CRM_SYNC", "c1")], now=T0)
        except Exception as exc:  # noqa: BLE001 - asserted below
            done["error"] = exc

    with other.engine.begin() as conn:
        conn.execute(subscriber_events.insert(), [{"event_id": "ev-1"}])  # the other's, not yet committed
        racing = threading.Thread(target=store)
        racing.start()
        racing.join(0.5)
        assert racing.is_alive(), "the insert should wait for the other transaction"
    racing.join(30)
    other.close()

    assert "error" not in done, repr(done.get("error"))
    assert done["inserted"] == Inserted(0)
    assert state(ledger) is None  # the other instance's transaction carried the state, not this one


def test_subscriber_state_is_the_same_whether_changes_arrive_in_one_batch_or_several(database_url):
    from writeback.ledger import Ledger

    resub = change(1, "subscribed", minutes=120)
    older_crm_unsub = change(2, "unsubscribed", "CRM_SYNC", "c1", minutes=60)
    ours_unsub = change(3, "unsubscribed", "MAILING_LINK", known_as=("r2",))
    ours_resub = change(4, "subscribed", minutes=60, known_as=("r2",))
    changes = [resub, older_crm_unsub, ours_unsub, ours_resub]
    one, several = Ledger.connect(database_url), Ledger.connect(database_url)
    one.insert([], changes, now=T0)
    states = {k: state(one, "c1", k) for k in ("r1", "r2")}
    with one.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM subscriber_state")
        conn.exec_driver_sql("DELETE FROM subscriber_events")
    for c in changes:
        several.insert([], [c], now=T0)
    assert {k: state(several, "c1", k) for k in ("r1", "r2")} == states
    assert states["r1"] == ("subscribed", None, None)
    assert states["r2"] == ("subscribed", "MAILING_LINK", None)
    one.close()
    several.close()


def test_two_flushers_racing_for_one_backlog_never_claim_a_row_twice(ledger):
    rows = [row(n, recipient=f"r{n % 17}", minutes=n, connection=f"c{n % 3}") for n in range(300)]
    ledger.insert(rows, now=T0)
    claimed: dict[str, list[str]] = {"a": [], "b": []}

    def flusher(owner: str) -> None:
        for _ in range(200):
            for connection in ("c0", "c1", "c2"):
                if not ledger.acquire_lease(connection, owner, T0, LEASE):
                    continue
                batch = ledger.claim_due(connection, owner, T0, limit=7)
                claimed[owner].extend(w.id for w in batch)
                ledger.record([RowResult(w.id, Status.COMPLETED) for w in batch], owner, T0)
                ledger.release_lease(connection, owner)

    threads = [threading.Thread(target=flusher, args=(o,)) for o in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = claimed["a"] + claimed["b"]
    assert len(everything) == len(set(everything)) == 300
    assert sum(n for (_, s), n in ledger.counts().items() if s == "completed") == 300
