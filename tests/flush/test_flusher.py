"""The flusher on SQLite and PostgreSQL, with dead letters on the real broker.

The CRM side is an adapter that records what it is given and answers as each test plans: the
flusher's rules (windows, batching, order, retries, breaker, dead letters, leases) are what is
specified here; the CRM protocols are specified by the adapter tests.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from tests.builders import NF_CRM, T0, activity, rows_for, subscriber
from writeback.adapters.base import ErrorKind, Outcome, Writeback
from writeback.contract.events import ErrorClass
from writeback.errors import PublishError
from writeback.flush.breaker import BreakerPolicy, BreakerRegistry, BreakerState
from writeback.flush.flusher import Flusher, refresh_gauges
from writeback.flush.retries import RETRIES_EXHAUSTED, RetryPolicy
from writeback.ingest.consume import writeback_id
from writeback.kafka.dead_letters import HEADER_PREFIX, OMITTED_HEADER, DeadLetterSink
from writeback.ledger import Ledger
from writeback.settings import parse_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

CONNECTIONS = ("c1", "c2", "c3")
SETTINGS = parse_settings(
    {
        "accounts": [
            {
                "id": "acme",
                "time_zone": "UTC",
                "connections": [{"id": c, "kind": "netforum", "crm": NF_CRM} for c in CONNECTIONS],
            }
        ]
    }
)


class Recorder:
    """A CRM adapter that keeps every batch it is given and answers from a per-id plan."""

    def __init__(self, max_batch: int = 200) -> None:
        self.max_batch = max_batch
        self.batches: list[list[Writeback]] = []
        self.plan: dict[str, deque[Callable[[str], Outcome]]] = {}
        self.default: Callable[[str], Outcome] = Outcome.completed
        self._lock = threading.Lock()

    def answer(self, writeback: str, *outcomes: Callable[[str], Outcome]) -> None:
        self.plan.setdefault(writeback, deque()).extend(outcomes)

    def write(self, batch: Sequence[Writeback]) -> list[Outcome]:
        assert len(batch) <= self.max_batch
        with self._lock:
            self.batches.append(list(batch))
            planned = [self.plan.get(wb.id) for wb in batch]
            return [(p.popleft() if p else self.default)(wb.id) for wb, p in zip(batch, planned, strict=True)]

    def close(self) -> None:
        pass

    def written(self) -> list[str]:
        return [wb.id for batch in self.batches for wb in batch]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_flusher(ledger, serde, publisher, topics, clock, recorder):
    def make(**options) -> Flusher:
        sink = options.pop("sink", DeadLetterSink(publisher, topics.dlq_prefix))
        return Flusher(
            ledger,
            lambda: SETTINGS,
            options.pop("adapters", lambda _account, _connection: recorder),
            sink,
            serde,
            clock=clock,
            policy=options.pop("policy", RetryPolicy(base_delay=timedelta(seconds=10), max_attempts=3)),
            rng=random.Random(7),
            **options,
        )

    return make


def statuses(ledger: Ledger) -> Counter[str]:
    return Counter(r["status"] for r in ledger.list(limit=100_000))


def test_due_rows_go_out_in_adapter_sized_batches_in_each_recipients_order(ledger, make_flusher, recorder, clock):
    rng = random.Random(3)
    events = [
        subscriber(rng.choice(["UNSUBSCRIBE", "RESUBSCRIBE"]), email=f"r{rng.randrange(30)}@example.org",
                   at=T0 - timedelta(minutes=rng.randrange(600)))
        for _ in range(450)
    ]
    ledger.insert(rows_for(events, "c1", closes=T0), now=T0)

    report = make_flusher().flush_due()

    # full batches while rows are claimable; a batch claimed while the one before is in the CRM
    # leaves out the recipients that one holds, so the tail may be split
    sizes = [len(b) for b in recorder.batches]
    assert sizes[:2] == [200, 200] and max(sizes) == 200 and sum(sizes) == 450
    assert sorted(recorder.written()) == sorted(writeback_id(e.event_id, "c1") for e in events)
    seen: dict[str, datetime] = {}
    for wb in (wb for batch in recorder.batches for wb in batch):
        assert wb.occurred_at >= seen.get(wb.recipient_key, wb.occurred_at), "a later event overtook an earlier one"
        seen[wb.recipient_key] = wb.occurred_at
    assert statuses(ledger) == {"completed": 450}
    assert report.outcomes == {"completed": 450}
    assert all(r["attempts"] == 1 and r["completed_at"] == T0 for r in ledger.list(limit=1000))


def test_connections_flushed_at_once_each_keep_their_recipients_order(ledger, make_flusher, clock):
    """With concurrency, each connection is flushed by one thread at a time: every row is written
    once, in each recipient's order, and the connections' calls overlap."""
    rng = random.Random(5)
    inside, overlapped, lock = [0], [False], threading.Lock()

    class Slow(Recorder):
        def write(self, batch: Sequence[Writeback]) -> list[Outcome]:
            with lock:
                inside[0] += 1
                overlapped[0] |= inside[0] > 1
            threading.Event().wait(0.05)  # a CRM call: the other connections' batches go meanwhile
            try:
                return super().write(batch)
            finally:
                with lock:
                    inside[0] -= 1

    adapters = {c: Slow(max_batch=50) for c in CONNECTIONS}
    events = {
        c: [
            subscriber(rng.choice(["UNSUBSCRIBE", "RESUBSCRIBE"]), email=f"r{rng.randrange(20)}@example.org",
                       at=T0 - timedelta(minutes=rng.randrange(600)))
            for _ in range(150)
        ]
        for c in CONNECTIONS
    }  # fmt: skip
    for c in CONNECTIONS:
        ledger.insert(rows_for(events[c], c, closes=T0), now=T0)

    report = make_flusher(adapters=lambda _a, connection: adapters[connection.id], concurrency=3).flush_due()

    assert report.outcomes == {"completed": 450}
    assert overlapped[0]
    for c in CONNECTIONS:
        written = [wb for batch in adapters[c].batches for wb in batch]
        assert sorted(wb.id for wb in written) == sorted(writeback_id(e.event_id, c) for e in events[c])
        seen: dict[str, datetime] = {}
        for wb in written:
            assert wb.occurred_at >= seen.get(wb.recipient_key, wb.occurred_at), "a later event overtook an earlier one"
            seen[wb.recipient_key] = wb.occurred_at
    assert statuses(ledger) == {"completed": 450}


def test_rows_wait_for_their_window_and_manual_rows_for_send_activity(ledger, make_flusher, recorder, clock):
    later, manual = [subscriber()], [activity(mailing="m7"), activity(mailing="m8")]
    ledger.insert(rows_for(later, "c1", closes=T0 + timedelta(minutes=10)) + rows_for(manual, "c2", closes=None), now=T0)
    flusher = make_flusher()

    flusher.flush_due()
    assert recorder.written() == []
    clock.advance(minutes=10)
    flusher.flush_due()
    assert recorder.written() == [writeback_id(later[0].event_id, "c1")]

    # "send activity now" for one mailing releases only its rows
    assert ledger.close_windows("c2", clock(), mailing_id="m7") == 1
    flusher.flush_due()
    assert recorder.written()[1:] == [writeback_id(manual[0].event_id, "c2")]
    assert statuses(ledger) == {"completed": 2, "pending": 1}


def test_a_permanent_failure_is_dead_lettered_with_its_event_and_the_row_fails(
    ledger, make_flusher, recorder, serde, topics, consume_all
):
    good, bad = subscriber(email="good@example.org"), subscriber(email="bad@example.org", reason="Moved away")
    ledger.insert(rows_for([good, bad], "c1", closes=T0), now=T0)
    bad_id = writeback_id(bad.event_id, "c1")
    recorder.answer(bad_id, lambda i: Outcome.failed(i, "INVALID_CROSS_REFERENCE_KEY", "no such contact"))

    report = make_flusher().flush_due()

    assert report.dead_letters == 1
    row = ledger.get(bad_id)
    assert (row["status"], row["error_code"], row["error_message"]) == ("failed", "INVALID_CROSS_REFERENCE_KEY", "no such contact")
    assert ledger.get(writeback_id(good.event_id, "c1"))["status"] == "completed"
    [message] = consume_all(topics.dlq_prefix + "netforum", expected=1)
    letter = serde.deserialize_dead_letter(message.topic(), message.value())
    assert (letter.writeback_id, letter.connection_id, letter.account_id) == (bad_id, "c1", "acme")
    assert (letter.error_class, letter.error_code, letter.attempts) == (ErrorClass.PERMANENT, "INVALID_CROSS_REFERENCE_KEY", 1)
    assert letter.replay_count == 0
    # the original event travels with it, re-framed for the topic it came from
    original = letter.original[0]
    assert serde.deserialize(original.topic, original.value) == bad
    assert message.key() == bad_id.encode()
    assert dict(message.headers())[HEADER_PREFIX + "class"] == b"PERMANENT"


def test_an_event_stored_unchecked_that_breaks_the_contract_fails_at_flush_with_the_field_named(
    ledger, make_flusher, recorder, serde, topics, consume_all
):
    """Ingest checks only what protects the ledger and the CRMs (writeback/contract/screen.py);
    the rest of the contract is the model's, built here. Such a row never reaches the CRM: it
    fails, and its dead letter says which field and why, without the value."""
    good, bad = subscriber(email="good@example.org"), subscriber(email="bad@example.org")
    rows = rows_for([good, bad], "c1", closes=T0)
    stored = json.loads(rows[1].payload)
    stored["scope"] = {"kind": "ALL_MAIL", "id": "list-secret-7", "name": None}  # ALL_MAIL takes no id
    rows[1].payload = json.dumps(stored)
    ledger.insert(rows, now=T0)
    bad_id = writeback_id(bad.event_id, "c1")

    report = make_flusher().flush_due()

    assert report.dead_letters == 1
    assert recorder.written() == [writeback_id(good.event_id, "c1")]
    row = ledger.get(bad_id)
    assert (row["status"], row["error_code"]) == ("failed", "UNREADABLE_EVENT")
    assert row["error_message"] == "the stored event does not fit the contract: scope: kind ALL_MAIL takes no id or name"
    [message] = consume_all(topics.dlq_prefix + "netforum", expected=1)
    letter = serde.deserialize_dead_letter(message.topic(), message.value())
    assert (letter.writeback_id, letter.error_code) == (bad_id, "UNREADABLE_EVENT")
    assert "scope: kind ALL_MAIL takes no id or name" in letter.error_message
    assert "list-secret-7" not in letter.error_message


def test_transient_failures_back_off_and_complete_and_exhaustion_dead_letters(
    ledger, make_flusher, recorder, clock, serde, topics, consume_all
):
    flaky, hopeless = subscriber(email="flaky@example.org"), subscriber(email="hopeless@example.org")
    ledger.insert(rows_for([flaky, hopeless], "c1", closes=T0), now=T0)
    flaky_id, hopeless_id = (writeback_id(e.event_id, "c1") for e in (flaky, hopeless))
    recorder.answer(flaky_id, lambda i: Outcome.retry(i, "UNABLE_TO_LOCK_ROW", "locked", kind=ErrorKind.CONTENTION))
    recorder.answer(hopeless_id, *[lambda i: Outcome.retry(i, "UNABLE_TO_LOCK_ROW", "locked", kind=ErrorKind.CONTENTION)] * 5)
    flusher = make_flusher()

    flusher.flush_due()
    row = ledger.get(flaky_id)
    assert (row["status"], row["attempts"], row["error_code"]) == ("pending", 1, "UNABLE_TO_LOCK_ROW")
    assert row["next_attempt_at"] > clock()  # backing off
    flusher.flush_due()
    assert len(recorder.batches) == 1  # nothing is due during the backoff

    clock.advance(minutes=1)
    flusher.flush_due()
    assert ledger.get(flaky_id)["status"] == "completed"
    assert ledger.get(flaky_id)["attempts"] == 2
    clock.advance(minutes=5)
    flusher.flush_due()  # the third try of a 3-attempt policy gives up
    row = ledger.get(hopeless_id)
    assert (row["status"], row["attempts"], row["error_code"]) == ("failed", 3, RETRIES_EXHAUSTED)
    assert "UNABLE_TO_LOCK_ROW" in row["error_message"]
    [message] = consume_all(topics.dlq_prefix + "netforum", expected=1)
    letter = serde.deserialize_dead_letter(message.topic(), message.value())
    assert (letter.error_class, letter.attempts) == (ErrorClass.TRANSIENT_EXHAUSTED, 3)
    assert letter.first_failure_at == T0


def test_an_outage_opens_the_breaker_so_rows_wait_and_recovery_closes_it(ledger, make_flusher, recorder, clock):
    events = [subscriber(email=f"o{i}@example.org") for i in range(5)]
    ledger.insert(rows_for(events, "c1", closes=T0), now=T0)
    recorder.default = lambda i: Outcome.retry(i, "HTTP_503", "Service Unavailable")
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=2, reset_timeout=timedelta(minutes=1)))
    flusher = make_flusher(
        breakers=breakers,
        policy=RetryPolicy(base_delay=timedelta(seconds=1), max_delay=timedelta(seconds=2), max_attempts=50),
    )

    for _ in range(2):
        flusher.flush_due()
        clock.advance(seconds=5)
    assert breakers.get("c1").state is BreakerState.OPEN
    calls = len(recorder.batches)
    for _ in range(5):  # open: no calls at all, and nothing fails
        flusher.flush_due()
        clock.advance(seconds=5)
    assert len(recorder.batches) == calls
    assert statuses(ledger) == {"pending": 5}

    recorder.default = Outcome.completed
    clock.advance(minutes=1)
    flusher.flush_due()  # half-open trial succeeds, the breaker closes, the rest follows
    assert breakers.get("c1").state is BreakerState.CLOSED
    assert statuses(ledger) == {"completed": 5}


def test_the_next_batch_is_claimed_while_the_crm_answers_and_a_stop_sends_it_back_unwritten(ledger, make_flusher):
    """The flusher's own work overlaps the CRM's: while a call is out, the next batch is already
    claimed. Stopping then finishes the call in flight, makes no other, and returns the batch
    claimed ahead to pending with no attempt counted."""
    events = [subscriber(email=f"s{i}@example.org", at=T0 - timedelta(minutes=i)) for i in range(6)]
    ledger.insert(rows_for(events, "c1", closes=T0), now=T0)
    seen_ahead: list[int] = []

    class Watching(Recorder):
        def write(self, batch: Sequence[Writeback]) -> list[Outcome]:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                in_flight = ledger.counts().get(("c1", "in_flight"), 0)
                if in_flight > len(batch):
                    break
                time.sleep(0.01)
            seen_ahead.append(in_flight - len(batch))
            flusher.stopping.set()
            return super().write(batch)

    crm = Watching(max_batch=2)
    flusher = make_flusher(adapters=lambda _a, _c: crm)
    report = flusher.flush_due()

    assert seen_ahead == [2]  # the next batch of two was claimed during the first call
    assert len(crm.batches) == 1 and report.outcomes == {"completed": 2}
    rest = [r for r in ledger.list(limit=10) if r["status"] != "completed"]
    assert len(rest) == 4
    assert all(r["status"] == "pending" and r["attempts"] == 0 and r["claimed_by"] is None for r in rest)


def test_a_batch_claimed_ahead_goes_back_to_pending_when_the_batch_before_opens_the_breaker(
    ledger, make_flusher, clock
):
    events = [subscriber(email=f"b{i}@example.org") for i in range(6)]
    ledger.insert(rows_for(events, "c1", closes=T0), now=T0)
    crm = Recorder(max_batch=2)
    crm.default = lambda i: Outcome.retry(i, "HTTP_503", "Service Unavailable")
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1, reset_timeout=timedelta(minutes=1)))
    make_flusher(adapters=lambda _a, _c: crm, breakers=breakers).flush_due()

    assert breakers.get("c1").state is BreakerState.OPEN
    assert len(crm.batches) == 1  # nothing after the call that opened it
    tried = {wb.id for wb in crm.batches[0]}
    rows = ledger.list(limit=10)
    assert {r["id"]: r["attempts"] for r in rows} == {r["id"]: int(r["id"] in tried) for r in rows}
    assert all(r["status"] == "pending" and r["claimed_by"] is None for r in rows)


def test_unacknowledged_dead_letters_leave_the_row_in_flight_until_a_later_pass(
    ledger, make_flusher, recorder, publisher, topics, consume_all
):
    bad = subscriber(email="bad@example.org")
    ledger.insert(rows_for([bad], "c1", closes=T0), now=T0)
    bad_id = writeback_id(bad.event_id, "c1")
    recorder.default = lambda i: Outcome.failed(i, "INVALID_FIELD", "bad")
    broken = make_flusher(sink=DeadLetterSink(publisher, "not a valid topic name!"))

    with pytest.raises(PublishError):
        broken.flush_due()
    assert ledger.get(bad_id)["status"] == "in_flight"  # not failed without its dead letter

    make_flusher().flush_due()  # another holder takes the lease, requeues and redoes it
    assert ledger.get(bad_id)["status"] == "failed"
    assert len(consume_all(topics.dlq_prefix + "netforum", expected=1)) == 1


def test_two_flushers_on_one_database_write_every_row_exactly_once(ledger, database_url, make_flusher, recorder):
    events = {c: [subscriber(email=f"{c}-{i % 40}@example.org", at=T0 - timedelta(seconds=i)) for i in range(400)] for c in CONNECTIONS}
    for connection, evs in events.items():
        ledger.insert(rows_for(evs, connection, closes=T0), now=T0)
    recorder.max_batch = 37
    second_ledger = Ledger.connect(database_url)
    flushers = [make_flusher(), make_flusher()]
    flushers[1].ledger = second_ledger  # its own engine and connection pool, like another process
    stop = threading.Event()

    def loop(flusher: Flusher) -> None:
        while not stop.is_set():
            flusher.flush_due()

    threads = [threading.Thread(target=loop, args=(f,)) for f in flushers]
    for t in threads:
        t.start()
    try:
        deadline = datetime.now() + timedelta(seconds=120)
        while statuses(ledger).get("completed", 0) < 1200 and datetime.now() < deadline:
            stop.wait(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        second_ledger.close()

    written = Counter(recorder.written())
    assert len(written) == 1200
    assert [i for i, n in written.items() if n > 1] == []
    assert statuses(ledger) == {"completed": 1200}
    assert all(r["attempts"] == 1 for r in ledger.list(limit=2000))


def test_a_writeback_too_large_for_its_dead_letter_topic_is_dead_lettered_with_a_digest(
    kafka, ledger, serde, topics, make_flusher, recorder, consume_all
):
    """The sink is sized to what the topic takes (here a topic that takes 4 kB): a stored event
    larger than that still fails into a dead letter, carrying its digest, and the row is failed."""
    from confluent_kafka.admin import AdminClient, NewTopic

    dlq = topics.dlq_prefix + "netforum"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(dlq, 1, 1, config={"max.message.bytes": "4096"})])[dlq].result(30)
    sink = DeadLetterSink.connect(kafka.bootstrap, serde, topics.dlq_prefix)
    big = subscriber(email="big@example.org", reason="r" * 6000)
    ledger.insert(rows_for([big], "c1", closes=T0), now=T0)
    recorder.default = lambda i: Outcome.failed(i, "INVALID_FIELD", "refused")
    try:
        make_flusher(sink=sink).flush_due()
    finally:
        sink.close()

    assert ledger.get(writeback_id(big.event_id, "c1"))["status"] == "failed"
    [message] = consume_all(dlq, expected=1)
    letter = serde.deserialize_dead_letter(message.topic(), message.value())
    framed = serde.serialize(big, big.topic)  # rows_for records the default topic as the source
    assert (letter.writeback_id, letter.error_code) == (writeback_id(big.event_id, "c1"), "INVALID_FIELD")
    assert letter.original[0].value == b""
    assert letter.original[0].value_sha256 == hashlib.sha256(framed).hexdigest()
    assert dict(message.headers())[OMITTED_HEADER].startswith(b"sha256=")


def test_the_gauges_carry_each_scheduled_classs_period_and_none_for_a_manual_window(ledger):
    def period(connection: str, wb_class: str) -> float | None:
        return REGISTRY.get_sample_value("writeback_schedule_period_seconds", {"connection": connection, "wb_class": wb_class})

    daily = {"kind": "daily", "at": "02:00"}
    settings = parse_settings(
        {
            "accounts": [
                {
                    "id": "acme",
                    "time_zone": "UTC",
                    "connections": [
                        {"id": "nf-daily", "kind": "netforum", "crm": NF_CRM, "schedules": {"activity": daily}},
                        {"id": "nf-manual", "kind": "netforum", "crm": NF_CRM, "schedules": {"activity": {"kind": "manual"}}},
                    ],
                }
            ]
        }
    )

    refresh_gauges(ledger, settings, T0)

    assert period("nf-daily", "subscriber") == 600  # every ten minutes (seed 000)
    assert period("nf-daily", "activity") == 86_400
    assert period("nf-manual", "subscriber") == 600
    assert period("nf-manual", "activity") is None  # only `send-activity` closes it: no period to be late by

    refresh_gauges(ledger, SETTINGS, T0)  # a connection gone from the settings loses its periods
    assert period("nf-daily", "subscriber") is None and period("c1", "subscriber") == 600
