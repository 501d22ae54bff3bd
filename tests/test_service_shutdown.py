"""Stopping `writeback serve` the way Kubernetes does (SIGTERM, then SIGKILL after the grace
period): the batch in flight is finished and recorded, offsets are committed, the consumer
leaves its group and the process exits, or, when a CRM call outlasts
WRITEBACK_SHUTDOWN_TIMEOUT_S, the batch is abandoned and the process exits anyway."""

from __future__ import annotations

import signal
import time

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from tests import test_service as serving
from tests.builders import group_members, wait_for
from tests.test_service import (
    by_status,
    markers,
    publish,
    recipient_events,
    release_all_windows,
    settings_toml,
)
from writeback.ledger import Ledger
from writeback.ledger.tables import flush_leases

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
service = serving.service  # `writeback serve` processes on the session's broker and registry


def uncommitted(kafka, group: str, topics: dict[str, str]) -> int:
    """Records on the topics beyond the group's committed offsets."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    metadata = admin.list_topics(timeout=10)
    partitions = [TopicPartition(t, p) for t in topics.values() for p in metadata.topics[t].partitions]
    request = ConsumerGroupTopicPartitions(group, partitions)
    committed = admin.list_consumer_group_offsets([request])[group].result(10).topic_partitions

    reader = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "watermarks"})
    try:
        behind = 0
        for tp in committed:
            _, high = reader.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            behind += high - max(tp.offset, 0)
        return behind
    finally:
        reader.close()


def lease_holders(database: str) -> list[str]:
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        holders = [o for (o,) in conn.execute(sa.select(flush_leases.c.owner)) if o is not None]
    engine.dispose()
    return holders


def start_flushing(service, kafka, schema_registry, sim, tmp_path, timeout_s: float, hold_s: float):
    instances, topics = service
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_toml(sim, {"acme": ["acme-sf"]}))
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    instances.env |= {
        "WRITEBACK_DATABASE_URL": database,
        "WRITEBACK_SETTINGS_FILE": str(settings),
        "WRITEBACK_SHUTDOWN_TIMEOUT_S": str(timeout_s),
    }
    contacts, events = recipient_events(sim, "acme", 20)
    proc = instances.start()
    publish(kafka, schema_registry, topics, events)
    ledger = Ledger.connect(database)
    wait_for(lambda: sum(ledger.counts().values()) == len(events), 60, lambda: "ingest: " + instances.output()[-2000:])
    wait_for(lambda: group_members(kafka.bootstrap, instances.env["WRITEBACK_GROUP_ID"]) == 1, 30, "the member")
    # the Notes call of the first batch is held by the CRM, then carried out
    sim.hang_next(1, seconds=hold_s, then_apply=True, method="POST", path_suffix="composite/sobjects")
    release_all_windows(ledger, ["acme-sf"])
    wait_for(lambda: by_status(ledger).get("in_flight", 0) > 0, 30, "a batch in flight")
    time.sleep(0.5)  # into the held call
    return instances, topics, proc, ledger, contacts, events, database


def test_sigterm_mid_batch_finishes_and_records_it_commits_leaves_the_group_and_exits_0(
    service, kafka, schema_registry, sim, tmp_path
):
    instances, topics, proc, ledger, contacts, events, database = start_flushing(
        service, kafka, schema_registry, sim, tmp_path, timeout_s=20, hold_s=3
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    output = instances.output()
    assert "stopped" in output and "abandoned" not in output

    counts = by_status(ledger)
    assert counts.get("in_flight", 0) == 0, "the batch in flight was finished and recorded"
    assert counts.get("completed", 0) > 0
    assert lease_holders(database) == [], "the lease was released for the next instance"
    group = instances.env["WRITEBACK_GROUP_ID"]
    assert group_members(kafka.bootstrap, group) == 0, "the consumer left the group (no wait for the session timeout)"
    assert uncommitted(kafka, group, topics) == 0, "every ingested record's offset was committed"

    # what is left is flushed by the next instance; each writeback is in the CRM once
    instances.start()
    wait_for(lambda: by_status(ledger).get("completed", 0) == len(events), 60, lambda: "the rest: " + instances.output()[-2000:])
    for contact in contacts:
        assert len(markers(sim, contact)) == 1
        assert len(sim.tasks_for(contact)) == 1
    ledger.close()


def test_sigterm_while_a_crm_call_outlasts_the_shutdown_timeout_abandons_the_batch_and_exits_within_it(
    service, kafka, schema_registry, sim, tmp_path
):
    hold = 8.0
    instances, _, proc, ledger, contacts, events, _ = start_flushing(
        service, kafka, schema_registry, sim, tmp_path, timeout_s=2, hold_s=hold
    )
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 1
    took = time.monotonic() - signalled
    assert took < hold - 1, f"exited after {took:.1f}s: it waited for the CRM call instead of abandoning it"
    assert "abandoned" in instances.output()
    assert by_status(ledger).get("in_flight", 0) > 0, "the abandoned rows stay in flight for the next lease holder"

    time.sleep(hold)  # the CRM carries out the abandoned call when its hold ends
    instances.start()
    wait_for(lambda: by_status(ledger).get("completed", 0) == len(events), 90, lambda: "recovery: " + instances.output()[-2000:])
    for contact in contacts:
        assert len(markers(sim, contact)) == 1, "the abandoned call's Note was written again"
        assert len(sim.tasks_for(contact)) == 1
    ledger.close()
