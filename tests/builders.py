"""Building blocks for tests: events for one account, a test's own topics, rows, waiting."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from writeback.contract.events import (
    ActivityEvent,
    Event,
    SubscriberAction,
    SubscriberEvent,
    parse_event,
)
from writeback.ingest.consume import writeback_id
from writeback.ledger.rows import WritebackClass
from writeback.ledger.store import NewWriteback

T0 = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)
# a Salesforce connection's `crm` settings, for tests that never call the CRM
SF_CRM = {"login_url": "https://acme.my.salesforce.com", "client_id": "acme", "client_secret": {"env": "ACME_SF_SECRET"}}
PS_CRM = {"database_url": "mssql+pyodbc://sql01.acme.org/PERSONIFY?driver=ODBC+Driver+18+for+SQL+Server", "username": "informz", "password": {"env": "ACME_PS_PASSWORD"}, "manage_unsubscribe": {"group": {"g-1": "NEWSLETTER"}}}
CM_CRM = {"api_url": "https://api.connectedcommunity.org/api/v2.0", "iam_key": {"env": "ACME_CM_IAM_KEY"}, "password": {"env": "ACME_CM_PASSWORD"}}
NF_CRM = {"xweb_url": "https://members.acme.org/xweb/secure/netFORUMXML.asmx", "username": "informz", "password": {"env": "ACME_NF_PASSWORD"}}


def subscriber(
    action: str = "UNSUBSCRIBE",
    *,
    account: str = "acme",
    email: str = "pat@example.org",
    source: str = "MAILING_LINK",
    at: datetime = T0,
    **extra: Any,
) -> SubscriberEvent:
    event = parse_event(
        {
            "type": "subscriber",
            "event_id": str(uuid.uuid4()),
            "account_id": account,
            "occurred_at": at.isoformat(),
            "source": source,
            "recipient": {"email": email},
            "action": action,
            **extra,
        }
    )
    assert isinstance(event, SubscriberEvent)
    return event


def activity(
    subcode: str = "Delivered",
    *,
    account: str = "acme",
    email: str = "pat@example.org",
    at: datetime = T0,
    mailing: str = "m1",
) -> ActivityEvent:
    event = parse_event(
        {
            "type": "activity",
            "event_id": str(uuid.uuid4()),
            "account_id": account,
            "occurred_at": at.isoformat(),
            "source": "CAMPAIGN",
            "recipient": {"email": email},
            "subcode": subcode,
            "mailing": {"mailing_id": mailing, "name": "Spring", "send_date": (at - timedelta(hours=1)).isoformat()},
        }
    )
    assert isinstance(event, ActivityEvent)
    return event


def unsubscribes(n: int, account: str = "acme") -> list[SubscriberEvent]:
    return [
        subscriber(SubscriberAction.UNSUBSCRIBE.value, account=account, email=f"r{i}@example.org", at=T0 + timedelta(seconds=i))
        for i in range(n)
    ]


@dataclass
class Topics:
    """This test's own event topics and dead-letter prefix."""

    subscriber: str
    activity: str
    dlq_prefix: str

    def models(self) -> dict[str, type[Event]]:
        return {self.subscriber: SubscriberEvent, self.activity: ActivityEvent}

    def of(self, event: Event) -> str:
        return self.subscriber if isinstance(event, SubscriberEvent) else self.activity


def group_consumer(bootstrap: str, group: str, topics: Topics, **extra: Any) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.queue.backoff.ms": 1,
            **extra,
        }
    )
    consumer.subscribe([topics.subscriber, topics.activity])
    return consumer


def group_members(bootstrap: str, group: str) -> int:
    """How many members the broker counts in the consumer group (0 before anyone joined)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        return len(admin.describe_consumer_groups([group])[group].result(10).members)
    except KafkaException:  # no coordinator yet: the group has not been joined
        return 0


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str | Callable[[], str] = "condition") -> None:
    """`what` may be a callable, read when the wait times out (a process's output by then)."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not condition():
        if datetime.now(UTC) > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")
        threading.Event().wait(0.1)


def rows_for(events: Sequence[Event], connection: str, closes: datetime | None) -> list[NewWriteback]:
    return [
        NewWriteback(
            id=writeback_id(e.event_id, connection),
            account_id=e.account_id,
            connection_id=connection,
            wb_class=WritebackClass.SUBSCRIBER if isinstance(e, SubscriberEvent) else WritebackClass.ACTIVITY,
            event_type=e.event_type,
            event_id=e.event_id,
            recipient_key=e.recipient.key(),
            occurred_at=e.occurred_at,
            window_closes_at=closes,
            payload=e.model_dump_json(),
            mailing_id=getattr(getattr(e, "mailing", None), "mailing_id", None),
            source_topic=e.topic,
            source_partition=0,
            source_offset=i,
        )
        for i, e in enumerate(events)
    ]
