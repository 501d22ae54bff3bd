"""A new CRM kind is one package and one registry line: here a kind defined in the test itself
(its settings model, its route, its adapter) runs end to end over the real broker, through
ingest, the ledger and the flusher, without any other module knowing it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests.builders import activity, group_consumer, subscriber, wait_for
from writeback import schedules
from writeback.adapters.base import Kind, Outcome, Route, Writeback, drop
from writeback.adapters.registry import KINDS
from writeback.contract.events import SubscriberAction, SubscriberEvent
from writeback.errors import ConfigError
from writeback.flush.flusher import Flusher, open_adapter
from writeback.ingest import consume as ingesting
from writeback.ingest.consume import Ingest
from writeback.kafka.dead_letters import DeadLetterSink
from writeback.ledger.rows import WritebackClass
from writeback.settings import parse_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


class LedgerbookConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    book: str = Field(min_length=1)


class Ledgerbook:
    """The throwaway CRM: a book of lines, one per unsubscribe, keyed by writeback id."""

    max_batch = 7

    def __init__(self, book: str, lines: dict[str, str]) -> None:
        self.book, self.lines = book, lines

    def write(self, batch: Sequence[Writeback]) -> list[Outcome]:
        for wb in batch:
            assert isinstance(wb.event, SubscriberEvent)  # typed, not a dict
            self.lines[wb.id] = f"{self.book}: {wb.event.recipient.email} {wb.event.action}"
        return [Outcome.completed(wb.id, wb.id) for wb in batch]

    def close(self) -> None:
        pass


@pytest.fixture
def ledgerbook(monkeypatch) -> dict[str, str]:
    lines: dict[str, str] = {}

    def route(event, _connection) -> Route:
        if isinstance(event, SubscriberEvent) and event.action is SubscriberAction.UNSUBSCRIBE:
            return Route(WritebackClass.SUBSCRIBER)
        return drop("not_for_kind")

    kind = Kind(
        name="ledgerbook",
        route=route,
        schedules=lambda _tz: {WritebackClass.SUBSCRIBER: schedules.SUBSCRIBER_STATUS_DEFAULT},
        config=LedgerbookConfig,
        open=lambda _account, connection: Ledgerbook(connection.config.book, lines),
    )
    monkeypatch.setitem(KINDS, kind.name, kind)  # the registry line
    return lines


def test_a_kind_defined_in_a_test_runs_end_to_end(kafka, ledger, serde, publisher, topics, ledgerbook):
    settings = parse_settings(
        {"accounts": [{"id": "acme", "time_zone": "UTC", "connections": [{"id": "acme-book", "kind": "ledgerbook", "crm": {"book": "blue"}}]}]}
    )
    sink = DeadLetterSink(publisher, topics.dlq_prefix)
    events = [subscriber(email=f"r{i}@example.org") for i in range(10)] + [activity(), subscriber("RESUBSCRIBE")]
    for event in events:
        publisher.publish(event, topic=topics.of(event))
    publisher.flush()
    consumer = group_consumer(kafka.bootstrap, f"g-{uuid.uuid4().hex[:6]}", topics)
    stop = threading.Event()
    loop = threading.Thread(target=ingesting.run, args=(consumer, Ingest(ledger, serde, topics.models(), lambda: settings, sink), stop))
    loop.start()
    try:
        wait_for(lambda: sum(ledger.counts().values()) == 10, 60, "ingest")
    finally:
        stop.set()
        loop.join(30)
        consumer.close()

    ledger.close_windows("acme-book", datetime.now(UTC))
    report = Flusher(ledger, lambda: settings, open_adapter, sink, serde).flush_due()

    assert report.batches == 2  # ten rows in batches of the kind's max_batch
    assert sorted(ledgerbook.values()) == sorted(f"blue: r{i}@example.org UNSUBSCRIBE" for i in range(10))
    assert ledger.counts() == {("acme-book", "completed"): 10}


def test_a_kinds_settings_model_names_the_bad_field(ledgerbook):
    with pytest.raises(ConfigError, match=r"connections\[acme-book\]\.crm\.book: "):
        parse_settings(
            {"accounts": [{"id": "acme", "time_zone": "UTC", "connections": [{"id": "acme-book", "kind": "ledgerbook", "crm": {"book": ""}}]}]}
        )

