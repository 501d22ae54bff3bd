"""Scale-out under failure, as an operator adds and loses instances: three `writeback serve`
processes in one consumer group on one PostgreSQL, topics of six partitions; one is SIGKILLed
mid-run, a fourth joins, another is stopped with SIGTERM, while events keep arriving and windows
keep closing. The Salesforce simulator must end up with every writeback exactly once, and each
recipient's Notes in the order of that recipient's events."""

from __future__ import annotations

import signal
import threading
import uuid
from datetime import timedelta

import pytest

from tests import test_service as serving
from tests.builders import T0, activity, group_members, subscriber, wait_for
from tests.test_service import (
    by_status,
    markers,
    publish,
    release_all_windows,
    settings_toml,
)
from writeback.adapters.salesforce import NOTE_MARKER
from writeback.contract.events import Event, SubscriberEvent
from writeback.ingest.consume import writeback_id
from writeback.ledger import Ledger

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(600)]
service = serving.service  # `writeback serve` processes on the session's broker and registry

ACCOUNTS = ("acme", "globex", "initech", "umbrella")
ACTIONS = ("UNSUBSCRIBE", "RESUBSCRIBE", "UNSUBSCRIBE")  # one per phase, in this order


def recipients(sim, per_account: int) -> dict[str, tuple[str, str]]:
    """contact id -> (account, email)"""
    found = {}
    for account in ACCOUNTS:
        for i in range(per_account):
            email = f"{account}-{i}@example.org"
            found[sim.add_contact(f"Person{i}", email)] = (account, email)
    return found


def phase(people: dict[str, tuple[str, str]], number: int) -> list[Event]:
    """Each recipient's `number`th subscriber change (and, in the first phase, a Sent)."""
    at = T0 + timedelta(minutes=number)
    events: list[Event] = []
    for contact, (account, email) in people.items():
        who = {"email": email, "integration_id": contact}
        events.append(subscriber(ACTIONS[number], account=account, email=email, at=at, recipient=who))
        if number == 0:
            sent = activity("Delivered", account=account, email=email, at=at)
            events.append(sent.model_copy(update={"recipient": type(sent.recipient).model_validate(who)}))
    return events


def test_three_instances_lose_one_to_sigkill_gain_a_fourth_and_stop_one_gracefully_writing_each_event_once_in_order(
    service, kafka, schema_registry, sim, postgres_database, topic_factory, tmp_path
):
    instances, _ = service
    topics = {"sub": topic_factory("scale-sub", partitions=6), "act": topic_factory("scale-act", partitions=6)}
    connections = {account: [f"{account}-sf"] for account in ACCOUNTS}
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_toml(sim, connections))
    group = f"scale-{uuid.uuid4().hex[:8]}"
    instances.env |= {
        "WRITEBACK_DATABASE_URL": postgres_database,
        "WRITEBACK_SETTINGS_FILE": str(settings),
        "WRITEBACK_SUBSCRIBER_TOPIC": topics["sub"],
        "WRITEBACK_ACTIVITY_TOPIC": topics["act"],
        "WRITEBACK_GROUP_ID": group,
        "WRITEBACK_INGEST_BATCH_SIZE": "20",
    }
    people = recipients(sim, 12)
    phases = [phase(people, n) for n in range(len(ACTIONS))]
    total = sum(len(p) for p in phases)
    ledger = Ledger.connect(postgres_database)
    stop = threading.Event()

    def keep_windows_closed() -> None:  # "send activity now", over and over
        while not stop.wait(0.3):
            try:
                release_all_windows(ledger, [c for ids in connections.values() for c in ids])
            except Exception:  # noqa: BLE001 - e.g. a table another instance is still creating
                pass

    closer = threading.Thread(target=keep_windows_closed)
    a, b, c = (instances.start() for _ in range(3))
    try:
        wait_for(lambda: group_members(kafka.bootstrap, group) == 3, 90, lambda: "three members: " + instances.output()[-2000:])
        closer.start()
        publish(kafka, schema_registry, topics, phases[0])
        wait_for(lambda: by_status(ledger).get("completed", 0) >= len(phases[0]) // 3, 90, "some writebacks")
        a.kill()  # SIGKILL mid-run: no commit, no LeaveGroup, leases and claimed rows left behind
        a.wait(10)
        instances.start()  # a fourth instance
        publish(kafka, schema_registry, topics, phases[1])
        wait_for(lambda: by_status(ledger).get("completed", 0) >= len(phases[0]) + len(phases[1]) // 3, 120, "phase 2 under way")
        b.send_signal(signal.SIGTERM)
        assert b.wait(30) == 0, "a graceful stop exits 0"
        publish(kafka, schema_registry, topics, phases[2])
        wait_for(
            lambda: by_status(ledger).get("completed", 0) == total,
            240,
            lambda: f"every writeback ({by_status(ledger)}): " + instances.output()[-3000:],
        )
    finally:
        stop.set()
        if closer.is_alive():
            closer.join()

    assert c.poll() is None, "the instances that were not stopped are still serving"
    assert by_status(ledger) == {"completed": total}
    for contact, (account, _) in people.items():
        expected = [
            writeback_id(p[i].event_id, f"{account}-sf")
            for p in phases
            for i in range(len(p))
            if p[i].recipient.integration_id == contact and isinstance(p[i], SubscriberEvent)
        ]
        written = [line.removeprefix(NOTE_MARKER) for line in markers(sim, contact)]
        assert written == expected, f"{contact}: notes out of order, lost or doubled"
        assert len(sim.tasks_for(contact)) == 1, "the Sent Task was lost or written twice"
        assert sim.record(contact)["HasOptedOutOfEmail"] is True  # the last change was an unsubscribe
    ledger.close()
