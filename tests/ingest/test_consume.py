"""Ingest over the real broker and registry, on SQLite and PostgreSQL: every event becomes
exactly one row per enabled connection, whatever is redelivered or thrown in between."""

from __future__ import annotations

import hashlib
import io
import json
import random
import threading
import uuid
from datetime import timedelta

import fastavro
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from tests.builders import (
    NF_CRM,
    SF_CRM,
    T0,
    activity,
    group_consumer,
    subscriber,
    unsubscribes,
    wait_for,
)
from writeback import metrics
from writeback.contract.events import (
    DeadLetter,
    ErrorClass,
    Source,
    SubscriberEvent,
    resolved_schema,
)
from writeback.ingest import consume as ingesting
from writeback.ingest.consume import (
    INGEST_ERROR,
    ORIGIN_MISMATCH,
    Consumed,
    Ingest,
    writeback_id,
)
from writeback.kafka.dead_letters import (
    HEADER_PREFIX,
    INVALID_EVENT,
    OMITTED_HEADER,
    UNDECODABLE,
    DeadLetterSink,
)
from writeback.ledger import Ledger
from writeback.ledger.rows import Status, WritebackClass
from writeback.replay import original_reader
from writeback.schedules import IntervalSchedule, next_fire
from writeback.settings import Settings, parse_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

SETTINGS = parse_settings(
    {
        "accounts": [
            {
                "id": "acme",
                "time_zone": "America/New_York",
                "connections": [
                    {"id": "acme-sf", "kind": "salesforce", "crm": SF_CRM},
                    {"id": "acme-nf", "kind": "netforum", "crm": NF_CRM},
                    {"id": "acme-off", "kind": "netforum", "enabled": False, "crm": NF_CRM},
                ],
            }
        ]
    }
)


@pytest.fixture
def sink(publisher, topics) -> DeadLetterSink:
    return DeadLetterSink(publisher, topics.dlq_prefix)


@pytest.fixture
def ingest(ledger, serde, topics, sink) -> Ingest:
    return Ingest(ledger, serde, topics.models(), lambda: SETTINGS, sink)


def run_until(consumer: Consumer, ingest: Ingest, done, timeout: float = 60.0) -> None:
    """Run the real ingest loop in a thread until `done()` holds."""
    stop = threading.Event()
    thread = threading.Thread(target=ingesting.run, args=(consumer, ingest, stop), kwargs={"poll_timeout": 0.2})
    thread.start()
    try:
        wait_for(done, timeout, "ingest")
    finally:
        stop.set()
        thread.join(30)


def committed(kafka, group: str, topic: str) -> int:
    """The group's committed offsets on `topic`, summed, read by a client of its own: a consumer
    must not be called from a second thread while the ingest loop polls it."""
    watcher = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group})
    try:
        partitions = watcher.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = watcher.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    except KafkaException:  # e.g. NOT_COORDINATOR while a new group's coordinator is elected
        return -1
    finally:
        watcher.close()


def rows(ledger: Ledger, **filters) -> list[dict]:
    return ledger.list(limit=100_000, **filters)


def test_every_event_is_one_row_per_enabled_connection_even_when_published_twice(
    kafka, ledger, ingest, publish, topics
):
    events = unsubscribes(40) + [activity(email=f"r{i}@example.org") for i in range(10)]
    stranger = unsubscribes(5, account="nobody")
    publish(events + stranger)
    publish(events)  # a producer retry without idempotence, or a replayed topic
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)
    total = 2 * len(events) + len(stranger)

    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) + committed(kafka, group, topics.activity) == total)

    stored = rows(ledger)
    # unsubscribes go to both enabled connections; Delivered (= Sent) to Salesforce (default
    # Sent on) and netFORUM; the disabled connection and the unknown account get nothing
    expected = {writeback_id(e.event_id, c) for e in events for c in ("acme-sf", "acme-nf")}
    assert sorted(r["id"] for r in stored) == sorted(expected)
    assert {r["status"] for r in stored} == {Status.PENDING.value}
    by_id = {r["id"]: r for r in stored}
    first = events[0]
    row = by_id[writeback_id(first.event_id, "acme-sf")]
    assert row["wb_class"] == WritebackClass.SUBSCRIBER.value
    assert row["event_id"] == first.event_id
    assert row["recipient_key"] == "r0@example.org"
    assert row["payload"]["action"] == "UNSUBSCRIBE"
    assert row["source_topic"] == topics.subscriber
    consumer.close()


def test_each_row_stores_its_event_as_the_contracts_model_writes_it(kafka, ledger, ingest, publish, topics):
    """Ingest stores the decoded record without building the model (writeback/contract/screen.py);
    what the flusher, dead letters and `writeback show` read back must be the event itself."""
    events = unsubscribes(3) + [activity(email=f"r{i}@example.org") for i in range(3)]
    publish(events)
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)

    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) + committed(kafka, group, topics.activity) == 6)

    by_id = {r["id"]: r for r in rows(ledger)}
    for event in events:
        row = by_id[writeback_id(event.event_id, "acme-sf")]
        assert row["payload"] == json.loads(event.model_dump_json())
        assert type(event).model_validate(row["payload"]) == event
    consumer.close()


def test_windows_close_at_the_schedules_next_fire_and_manual_ones_wait(kafka, ledger, serde, topics, sink, publish):
    clock_now = T0 + timedelta(minutes=3)
    ingest = Ingest(ledger, serde, topics.models(), lambda: SETTINGS, sink, clock=lambda: clock_now)
    status_change, sent = subscriber(), activity()
    publish([status_change, sent])
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)
    run_until(consumer, ingest, lambda: len(rows(ledger)) == 4)

    closes = {r["id"]: r["window_closes_at"] for r in rows(ledger)}
    ten_minutes = next_fire(IntervalSchedule(minutes=10), clock_now)
    assert ten_minutes == T0 + timedelta(minutes=10)
    # subscriber status: every ten minutes (seeds 000, 002) on both connections
    assert closes[writeback_id(status_change.event_id, "acme-sf")] == ten_minutes
    assert closes[writeback_id(status_change.event_id, "acme-nf")] == ten_minutes
    # Salesforce mailing activity defaults to Manual (002): no close until send-activity
    assert closes[writeback_id(sent.event_id, "acme-sf")] is None
    # netFORUM activity: daily at 04:00 in the account's zone (08:00 UTC: New York is on EDT from 8 March 2026)
    assert closes[writeback_id(sent.event_id, "acme-nf")] == T0.replace(hour=8) + timedelta(days=1)
    consumer.close()


def test_a_crash_between_insert_and_commit_redelivers_and_adds_nothing(kafka, ledger, ingest, publish, topics):
    events = unsubscribes(30)
    publish(events)
    group = f"g-{uuid.uuid4().hex[:6]}"

    # the first consumer stores a batch and dies before committing it
    first = group_consumer(kafka.bootstrap, group, topics)
    got: list = []
    wait_for(lambda: got.extend(m for m in first.consume(100, timeout=0.5) if not m.error()) or len(got) >= 10)
    report = ingest.handle([Consumed.of(m) for m in got])
    assert report.added == 2 * len(got)
    first.close()  # no commit: as if the process was killed here
    assert len(rows(ledger)) == 2 * len(got)

    duplicates_before = metrics.DUPLICATES._value.get()
    second = group_consumer(kafka.bootstrap, group, topics)
    run_until(second, ingest, lambda: committed(kafka, group, topics.subscriber) == len(events))

    assert len(rows(ledger)) == 2 * len(events)
    assert {r["id"] for r in rows(ledger)} == {writeback_id(e.event_id, c) for e in events for c in ("acme-sf", "acme-nf")}
    # the redelivered batch was seen again and added nothing
    assert metrics.DUPLICATES._value.get() - duplicates_before >= 2 * len(got)
    second.close()


def test_values_the_ledger_cannot_store_are_set_aside_with_the_field_named_and_the_rest_flow(
    kafka, ledger, ingest, publisher, serde, topics, consume_all
):
    """Ids longer than the ledger keeps (account and mailing 64, recipient 320) and text with NUL
    characters are contract breaches: PostgreSQL would refuse the row, and retrying a batch that
    can never be stored would stop its partition for good."""
    from confluent_kafka import Producer

    good_before, good_after = subscriber(email="a@example.org"), subscriber(email="b@example.org")
    long_recipient = {**subscriber().to_avro(), "recipient": {"email": None, "integration_id": "X" * 321, "record_type": None}}
    sent = activity().to_avro()
    long_mailing = {**sent, "mailing": {**sent["mailing"], "mailing_id": "M" * 65}}
    nul_in_payload = {**sent, "mailing": {**sent["mailing"], "name": "Spring\x00"}}  # PostgreSQL stores no NUL
    encoded = []
    for topic, schema, record in (
        (topics.subscriber, "SubscriberEvent", long_recipient),
        (topics.activity, "ActivityEvent", long_mailing),
        (topics.activity, "ActivityEvent", nul_in_payload),
    ):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, fastavro.parse_schema(resolved_schema(schema)), record)
        frame = serde.serialize(subscriber() if schema == "SubscriberEvent" else activity(), topic)[:5]
        encoded.append((topic, frame + body.getvalue()))
    publisher.publish(good_before, topic=topics.subscriber)
    publisher.flush()
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for topic, value in encoded:
        producer.produce(topic, value, key=b"acme:x")
    producer.flush(10)
    publisher.publish(good_after, topic=topics.subscriber)
    publisher.flush()
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)

    run_until(
        consumer, ingest,
        lambda: committed(kafka, group, topics.subscriber) == 3 and committed(kafka, group, topics.activity) == 2,
    )  # fmt: skip

    assert {r["event_id"] for r in rows(ledger)} == {good_before.event_id, good_after.event_id}
    letters = [serde.deserialize_dead_letter(m.topic(), m.value()) for m in consume_all(topics.dlq_prefix + "ingest", expected=3)]
    assert {lt.error_code for lt in letters} == {INVALID_EVENT}
    messages = " | ".join(lt.error_message for lt in letters)
    assert "recipient.integration_id" in messages and "mailing.mailing_id" in messages
    assert "mailing.name: must not contain NUL characters" in messages
    assert "XXXX" not in messages and "MMMM" not in messages  # the reason, never the value


def test_an_event_the_database_refuses_is_set_aside_and_the_rest_of_its_batch_is_stored(
    kafka, ledger, ingest, publish, serde, topics, consume_all
):
    """Whatever validation lets through that the database still refuses (here a constraint added
    behind the service's back) must not stop the partition: the batch is stored event by event
    and the refused one dead-lettered with the database's reason, not its values."""
    with ledger.engine.begin() as conn:
        if ledger.dialect == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON writebacks "
                "WHEN NEW.recipient_key = 'poison@example.org' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "ALTER TABLE writebacks ADD CONSTRAINT refuse_poison CHECK (recipient_key <> 'poison@example.org')"
            )
    events = [subscriber(email="a@example.org"), subscriber(email="poison@example.org"), subscriber(email="b@example.org")]
    publish(events)
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)

    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 3)

    stored = {r["event_id"] for r in rows(ledger)}
    assert stored == {events[0].event_id, events[2].event_id}
    assert len(rows(ledger)) == 4  # both enabled connections, for each stored event
    [message] = consume_all(topics.dlq_prefix + "ingest", expected=1)
    letter = serde.deserialize_dead_letter(message.topic(), message.value())
    assert letter.error_code == INVALID_EVENT
    assert letter.error_message.startswith("the ledger refused it: IntegrityError")
    assert "poison" not in letter.error_message
    assert serde.deserialize(topics.subscriber, letter.original[0].value, SubscriberEvent) == events[1]


def test_poison_between_good_records_is_dead_lettered_byte_for_byte_and_the_good_ones_flow(
    kafka, ledger, ingest, publisher, serde, topics, consume_all
):
    good_before, good_after = subscriber(email="a@example.org"), subscriber(email="b@example.org")
    publisher.publish(good_before, topic=topics.subscriber)
    publisher.flush()
    garbage = b"\x00\x00\x00\x00\x01not avro at all"
    framed = serde.serialize(subscriber(), topics.subscriber)
    # valid Avro under the real schema id, but the email breaks the contract
    body = io.BytesIO()
    bad = {**subscriber().to_avro(), "recipient": {"email": "no-at-sign", "integration_id": None, "record_type": None}}
    fastavro.schemaless_writer(body, fastavro.parse_schema(resolved_schema("SubscriberEvent")), bad)
    invalid = framed[:5] + body.getvalue()
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topics.subscriber, garbage, key=b"acme:a@example.org")
    producer.produce(topics.subscriber, invalid, key=b"acme:a@example.org")
    producer.flush(10)
    publisher.publish(good_after, topic=topics.subscriber)
    publisher.flush()
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)

    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 4)

    assert {r["event_id"] for r in rows(ledger)} == {good_before.event_id, good_after.event_id}
    letters = consume_all(topics.dlq_prefix + "ingest", expected=2)
    assert len(letters) == 2
    decoded = {serde.deserialize_dead_letter(m.topic(), m.value()).error_code: m for m in letters}
    assert set(decoded) == {UNDECODABLE, INVALID_EVENT}
    for code, raw in ((UNDECODABLE, garbage), (INVALID_EVENT, invalid)):
        message = decoded[code]
        letter: DeadLetter = serde.deserialize_dead_letter(message.topic(), message.value())
        assert letter.error_class is ErrorClass.POISON
        assert letter.original[0].value == raw  # byte for byte
        assert letter.original[0].topic == topics.subscriber
        headers = dict(message.headers())
        assert headers[HEADER_PREFIX + "topic"] == topics.subscriber.encode()
        assert int(headers[HEADER_PREFIX + "offset"]) == letter.original[0].offset
        assert headers[HEADER_PREFIX + "code"] == code.encode()
    invalid_letter = serde.deserialize_dead_letter(decoded[INVALID_EVENT].topic(), decoded[INVALID_EVENT].value())
    assert "recipient.email" in invalid_letter.error_message
    assert "no-at-sign" not in invalid_letter.error_message  # the reason, never the value
    consumer.close()


def test_a_marketing_resubscribe_after_a_crm_unsubscribe_is_refused_with_origin_mismatch(
    kafka, ledger, ingest, publish, topics
):
    crm_unsub = subscriber("UNSUBSCRIBE", email="crm@example.org", source="CRM_SYNC", at=T0)
    refused = subscriber("RESUBSCRIBE", email="crm@example.org", source="SUBSCRIPTION_PAGE", at=T0 + timedelta(minutes=1))
    ours_unsub = subscriber("UNSUBSCRIBE", email="own@example.org", source="MAILING_LINK", at=T0)
    allowed = subscriber("RESUBSCRIBE", email="own@example.org", source="SUBSCRIPTION_PAGE", at=T0 + timedelta(minutes=1))
    publish([crm_unsub, refused, ours_unsub, allowed])
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)

    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 4)

    by_id = {r["id"]: r for r in rows(ledger)}
    # the CRM's own unsubscribe is not written back to it
    assert writeback_id(crm_unsub.event_id, "acme-sf") not in by_id
    for connection in ("acme-sf", "acme-nf"):
        row = by_id[writeback_id(refused.event_id, connection)]
        assert row["status"] == Status.FAILED.value
        assert row["error_code"] == ORIGIN_MISMATCH
        assert "CRM" in row["error_message"]
        assert by_id[writeback_id(allowed.event_id, connection)]["status"] == Status.PENDING.value
    # visible in the writeback list of failures
    failed = rows(ledger, status=Status.FAILED)
    assert {r["event_id"] for r in failed} == {refused.event_id}
    for connection in ("acme-sf", "acme-nf"):
        state = ledger.subscribers([(connection, "crm@example.org")])[(connection, "crm@example.org")]
        assert (state["status"], state["unsubscribe_source"]) == ("unsubscribed", "CRM_SYNC")
    consumer.close()


def test_settings_are_read_per_batch_so_a_new_connection_gets_later_events(kafka, ledger, serde, topics, sink, publish):
    current: list[Settings] = [parse_settings({"accounts": [{"id": "acme", "time_zone": "UTC"}]})]
    ingest = Ingest(ledger, serde, topics.models(), lambda: current[0], sink)
    before, after = subscriber(email="x@example.org"), subscriber(email="y@example.org")
    publish([before])
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)
    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 1)
    assert rows(ledger) == []  # the account had no connection yet: dropped, counted
    current[0] = SETTINGS
    publish([after])
    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 2)
    assert {r["event_id"] for r in rows(ledger)} == {after.event_id}
    consumer.close()


@given(event_id=st.text(), connection_id=st.text())
def test_writeback_ids_are_the_uuid5_of_event_and_connection(event_id, connection_id):
    """Ids stored by earlier versions (`uuid.uuid5`) must keep matching redeliveries."""
    namespace = uuid.UUID("6f1d2a8e-3c4b-5d6e-9f70-81a2b3c4d5e6")
    assert writeback_id(event_id, connection_id) == str(uuid.uuid5(namespace, f"{event_id}/{connection_id}"))


def test_a_record_too_large_for_its_dead_letter_is_set_aside_as_a_digest_and_its_partition_moves_on(
    kafka, ledger, serde, topics, publisher, consume_all
):
    """The broker took the record, but the record plus a dead letter's envelope is more than
    the dead-letter topic takes: the letter carries the value's digest, and nothing stops."""
    from confluent_kafka import Producer

    sink = DeadLetterSink.connect(kafka.bootstrap, serde, topics.dlq_prefix)
    ingest = Ingest(ledger, serde, topics.models(), lambda: SETTINGS, sink)
    before, after = subscriber(email="a@example.org"), subscriber(email="b@example.org")
    huge = b"\x00\xff\xff\xff\xf0" + random.randbytes(1_048_380)  # unknown schema id; just fits the topic
    big = Producer({"bootstrap.servers": kafka.bootstrap, "message.max.bytes": 1_048_588, "compression.type": "none"})
    for value in (serde.serialize(before, topics.subscriber), huge, serde.serialize(after, topics.subscriber)):
        big.produce(topics.subscriber, value, key=b"acme:a@example.org", partition=0)
    assert big.flush(30) == 0
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)

    try:
        run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 3)
    finally:
        sink.close()

    assert {r["event_id"] for r in rows(ledger)} == {before.event_id, after.event_id}
    [message] = consume_all(topics.dlq_prefix + "ingest", expected=1)
    letter = serde.deserialize_dead_letter(message.topic(), message.value())
    original = letter.original[0]
    assert letter.error_code == UNDECODABLE
    assert (original.value, original.key) == (b"", None)
    assert (original.value_sha256, original.value_size) == (hashlib.sha256(huge).hexdigest(), len(huge))
    assert (original.topic, original.partition, original.offset) == (topics.subscriber, 0, 1)
    headers = dict(message.headers())
    assert headers[OMITTED_HEADER] == f"sha256={original.value_sha256}; size={len(huge)}".encode()
    # replay reads it back from where it was consumed, checked against the digest
    fetched = original_reader(kafka.bootstrap)(original)
    assert fetched is not None and (fetched.value, fetched.key) == (huge, b"acme:a@example.org")
    assert original_reader(kafka.bootstrap)(original.model_copy(update={"value_sha256": "0" * 64})) is None
    consumer.close()


def test_a_record_whose_handling_raises_is_dead_lettered_and_its_neighbours_are_stored(
    kafka, ledger, ingest, publish, topics, serde, consume_all, monkeypatch
):
    """A bug that one record triggers (injected here below ingest's boundary) costs that record
    a dead letter, never the partition."""
    real = ingesting.fan_out

    def fan_out(events, *args, **kwargs):
        if any(e.data["recipient"]["email"] == "boom@example.org" for e in events):
            raise TypeError("a bug this record triggers")
        return real(events, *args, **kwargs)

    monkeypatch.setattr(ingesting, "fan_out", fan_out)
    events = [subscriber(email="a@example.org"), subscriber(email="boom@example.org"), subscriber(email="b@example.org")]
    publish(events)
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)

    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 3)

    assert {r["event_id"] for r in rows(ledger)} == {events[0].event_id, events[2].event_id}
    [message] = consume_all(topics.dlq_prefix + "ingest", expected=1)
    letter = serde.deserialize_dead_letter(message.topic(), message.value())
    assert letter.error_code == INGEST_ERROR
    assert "TypeError" in letter.error_message and "boom" not in letter.error_message
    assert serde.deserialize(topics.subscriber, letter.original[0].value, SubscriberEvent) == events[1]
    consumer.close()


def test_an_event_id_published_again_with_other_content_changes_neither_rows_nor_state(
    kafka, ledger, ingest, publish, topics
):
    crm_unsub = subscriber("UNSUBSCRIBE", email="crm@example.org", source="CRM_SYNC", at=T0)
    # the same event id reused for a marketing-side unsubscribe, later
    impostor = crm_unsub.model_copy(update={"source": Source.MAILING_LINK, "occurred_at": T0 + timedelta(minutes=5)})
    resub = subscriber("RESUBSCRIBE", email="crm@example.org", source="ADMIN", at=T0 + timedelta(minutes=10))
    before = metrics.CONFLICTING_DUPLICATES._value.get()
    publish([crm_unsub, impostor, resub])
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)

    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 3)

    by_id = {r["id"]: r for r in rows(ledger)}
    # the first event is the CRM's own unsubscribe, written back nowhere; the impostor, which
    # both connections would take, adds no row either
    assert [r for r in by_id.values() if r["event_id"] == crm_unsub.event_id] == []
    # the state is the first event's: the resubscribe is still refused as undoing a CRM opt-out
    assert by_id[writeback_id(resub.event_id, "acme-nf")]["error_code"] == ORIGIN_MISMATCH
    state = ledger.subscribers([("acme-nf", "crm@example.org")])[("acme-nf", "crm@example.org")]
    assert (state["status"], state["unsubscribe_source"], state["last_event_at"]) == ("unsubscribed", "CRM_SYNC", T0)
    assert metrics.CONFLICTING_DUPLICATES._value.get() - before == 1
    consumer.close()


def test_a_crm_opt_out_refuses_a_marketing_resubscribe_only_on_the_connection_it_came_from(
    kafka, ledger, serde, topics, sink, publish
):
    """An unsubscribe made in netFORUM (CRM sync on that connection) does not refuse a
    resubscribe bound for the account's Salesforce connection; one keyed by email still
    matches a resubscribe that carries the integration id."""
    ingest = Ingest(ledger, serde, topics.models(), lambda: SETTINGS, sink)
    in_netforum = subscriber(
        "UNSUBSCRIBE", email="pat@example.org", source="CRM_SYNC", crm_connection_id="acme-nf", at=T0
    )
    resub = subscriber(
        "RESUBSCRIBE", email="pat@example.org", source="ADMIN", at=T0 + timedelta(minutes=1),
        recipient={"email": "Pat@Example.org", "integration_id": "C-1001"},
    )  # fmt: skip
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = group_consumer(kafka.bootstrap, group, topics)
    # keyed differently, so on different partitions: the resubscribe comes once the opt-out is in
    publish([in_netforum])
    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 1)
    publish([resub])
    run_until(consumer, ingest, lambda: committed(kafka, group, topics.subscriber) == 2)

    netforum = ledger.get(writeback_id(resub.event_id, "acme-nf"))
    salesforce = ledger.get(writeback_id(resub.event_id, "acme-sf"))
    assert (netforum["status"], netforum["error_code"]) == (Status.FAILED.value, ORIGIN_MISMATCH)
    assert (salesforce["status"], salesforce["error_code"]) == (Status.PENDING.value, None)
    consumer.close()
