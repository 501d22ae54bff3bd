"""A SIGKILL between the rows' write and the offsets' commit, on the append-keyed ledger: the
restarted consumer is handed the batch again and it adds nothing, so every (event, connection)
has exactly one row, republished event ids included."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.builders import (
    NF_CRM,
    SF_CRM,
    Topics,
    group_consumer,
    unsubscribes,
    wait_for,
)
from writeback.ingest import consume as ingesting
from writeback.ingest.consume import Ingest, writeback_id
from writeback.ledger import Ledger
from writeback.settings import parse_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

SETTINGS = {
    "accounts": [
        {
            "id": "acme",
            "time_zone": "UTC",
            "connections": [
                {"id": "acme-sf", "kind": "salesforce", "crm": SF_CRM},
                {"id": "acme-nf", "kind": "netforum", "crm": NF_CRM},
            ],
        }
    ]
}


def _wired(bootstrap: str, registry_url: str, database_url: str, topics: Topics):
    from writeback.contract.serde import EventSerde, registry_client
    from writeback.kafka.dead_letters import DeadLetterSink
    from writeback.kafka.producer import Publisher

    ledger = Ledger.connect(database_url)
    serde = EventSerde(registry_client(registry_url))
    publisher = Publisher(bootstrap, serde)
    settings = parse_settings(SETTINGS)
    ingest = Ingest(ledger, serde, topics.models(), lambda: settings, DeadLetterSink(publisher, topics.dlq_prefix))
    return ledger, ingest, publisher


def _ingest_and_die_before_the_second_commit(
    bootstrap: str, registry_url: str, database_url: str, topics: Topics, group: str
) -> None:
    """The service's ingest loop in a process of its own that SIGKILLs itself once the second
    batch's rows are stored, before its offsets are committed."""
    _, ingest, _ = _wired(bootstrap, registry_url, database_url, topics)
    commit, commits = ingesting.kafka.commit, []

    def commit_or_die(consumer, records):
        commits.append(len(records))
        if len(commits) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # the rows are durable; the offsets are not
        commit(consumer, records)

    ingesting.kafka.commit = commit_or_die
    consumer = group_consumer(bootstrap, group, topics)
    ingesting.run(consumer, ingest, threading.Event(), batch_size=15, poll_timeout=0.2)


def _committed(bootstrap: str, group: str, topics: Topics) -> int:
    watcher = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = []
        for topic in (topics.subscriber, topics.activity):
            partitions = watcher.list_topics(topic, timeout=10).topics[topic].partitions
            offsets += watcher.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        watcher.close()


def test_a_kill_between_the_rows_and_the_commit_leaves_one_row_per_event_and_connection(
    kafka, schema_registry, database_url, topics, publish
):
    events = unsubscribes(60)
    publish(events)
    publish(events[:10])  # the same event ids published a second time
    group = f"kill-{uuid.uuid4().hex[:6]}"
    Ledger.connect(database_url).close()  # migrated before either process starts

    child = multiprocessing.get_context("spawn").Process(
        target=_ingest_and_die_before_the_second_commit,
        args=(kafka.bootstrap, schema_registry.url, database_url, topics, group),
    )
    child.start()
    child.join(90)
    assert child.exitcode == -signal.SIGKILL
    ledger, ingest, publisher = _wired(kafka.bootstrap, schema_registry.url, database_url, topics)
    stored_before_restart = len(ledger.list(limit=100_000))
    committed_before_restart = _committed(kafka.bootstrap, group, topics)
    assert stored_before_restart > 2 * committed_before_restart  # a stored batch was not committed

    consumer = group_consumer(kafka.bootstrap, group, topics)
    stop = threading.Event()
    loop = threading.Thread(target=ingesting.run, args=(consumer, ingest, stop), kwargs={"poll_timeout": 0.2})
    loop.start()
    try:
        wait_for(lambda: _committed(kafka.bootstrap, group, topics) == len(events) + 10, 60, "ingest after restart")
    finally:
        stop.set()
        loop.join(30)
        consumer.close()
        publisher.close()

    stored = ledger.list(limit=100_000)
    pairs = [(r["event_id"], r["connection_id"]) for r in stored]
    assert len(pairs) == len(set(pairs)) == 2 * len(events)
    assert {r["id"] for r in stored} == {writeback_id(e.event_id, c) for e in events for c in ("acme-sf", "acme-nf")}
    ledger.close()
