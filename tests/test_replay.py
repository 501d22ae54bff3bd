"""Failures and replay against the Salesforce simulator, the real broker and both databases:
an outage waits instead of failing, a bad record is dead-lettered once, and replay writes each
writeback to the CRM exactly once however often it runs."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from confluent_kafka import Consumer
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import T0, rows_for, subscriber, wait_for
from writeback import replay as replaying
from writeback.adapters.salesforce import NOTE_MARKER
from writeback.contract.events import ErrorClass, OriginalRecord, SubscriberEvent
from writeback.flush.breaker import (
    BreakerPolicy,
    BreakerRegistry,
    BreakerState,
    Transition,
)
from writeback.flush.flusher import Flusher, open_adapter
from writeback.flush.retries import RetryPolicy
from writeback.ingest.consume import Ingest, writeback_id
from writeback.kafka import dead_letters
from writeback.kafka.dead_letters import DeadLetterSink
from writeback.settings import Settings, apply, parse_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

REJECTED = "FIELD_CUSTOM_VALIDATION_EXCEPTION"


@pytest.fixture
def settings(sim, monkeypatch) -> Settings:
    monkeypatch.setenv("TEST_SF_SECRET", sim.client_secret)
    return parse_settings(
        {
            "accounts": [
                {
                    "id": "acme",
                    "time_zone": "America/New_York",
                    "connections": [
                        {
                            "id": "acme-sf",
                            "kind": "salesforce",
                            "crm": {
                                "login_url": sim.login_url,
                                "client_id": sim.client_id,
                                "client_secret": {"env": "TEST_SF_SECRET"},
                            },
                        }
                    ],
                }
            ]
        }
    )


@pytest.fixture
def breakers() -> BreakerRegistry:
    return BreakerRegistry(BreakerPolicy(failure_threshold=2, reset_timeout=timedelta(seconds=1), growth=1.0))


@pytest.fixture
def flusher(ledger, settings, serde, publisher, topics, breakers) -> Iterator[Flusher]:
    apply(ledger, settings, T0)
    flusher = Flusher(
        ledger,
        lambda: settings,
        open_adapter,
        DeadLetterSink(publisher, topics.dlq_prefix),
        serde,
        policy=RetryPolicy(base_delay=timedelta(milliseconds=100), max_delay=timedelta(milliseconds=500), max_attempts=30),
        breakers=breakers,
        rng=random.Random(5),
    )
    yield flusher
    flusher.close()


def unsubscribes_for(sim, count: int) -> tuple[list[str], list[SubscriberEvent]]:
    contacts, events = [], []
    for i in range(count):
        contact = sim.add_contact(f"P{i}", f"p{i}@example.org")
        contacts.append(contact)
        event = subscriber("UNSUBSCRIBE", email=f"p{i}@example.org", at=T0 + timedelta(seconds=i))
        recipient = event.recipient.model_copy(update={"integration_id": contact})
        events.append(event.model_copy(update={"recipient": recipient}))
    return contacts, events


def notes(sim, contact: str) -> list[str]:
    return [line for n in sim.notes_for(contact) for line in n["Body"].splitlines() if line.startswith(NOTE_MARKER)]


def flush_until_settled(ledger, flusher: Flusher, timeout: float = 60) -> None:
    def settled() -> bool:
        flusher.flush_due()
        counts = {s for (_c, s) in ledger.counts()}
        return counts <= {"completed", "failed"}

    wait_for(settled, timeout, "every row to complete or fail")


def replayer(kafka, ledger, serde, settings, flusher, group: str, ingest: Ingest | None = None) -> replaying.Replayer:
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )
    return replaying.Replayer(consumer, ledger, serde, lambda: settings, flusher, ingest=ingest, wait=timedelta(seconds=20))


def test_a_5xx_storm_waits_behind_the_breaker_and_recovers_with_no_dead_letter(
    ledger, sim, flusher, breakers, topics, consume_all
):
    contacts, events = unsubscribes_for(sim, 5)
    ledger.insert(rows_for(events, "acme-sf", closes=T0), now=T0)
    seen: list[BreakerState] = []
    breakers.on_change(lambda t: seen.append(t.new) if isinstance(t, Transition) else None)
    sim.fail_next(8, status=503)

    flush_until_settled(ledger, flusher)

    assert {s for (_c, s) in ledger.counts()} == {"completed"}
    assert BreakerState.OPEN in seen and seen[-1] is BreakerState.CLOSED
    assert breakers.get("acme-sf").trips >= 1
    assert consume_all(topics.dlq_prefix + "salesforce", timeout=3) == []
    for contact in contacts:
        assert len(notes(sim, contact)) == 1
        assert sim.record(contact)["HasOptedOutOfEmail"] is True


def test_a_bad_recipient_is_dead_lettered_once_and_replay_after_the_fix_writes_it_once(
    kafka, ledger, sim, flusher, serde, settings, topics, consume_all
):
    contacts, events = unsubscribes_for(sim, 4)
    bad_contact, bad_event = contacts[0], events[0]
    bad_id = writeback_id(bad_event.event_id, "acme-sf")
    sim.reject_id(bad_contact, REJECTED, "Email Opt Out is locked for this contact")
    ledger.insert(rows_for(events, "acme-sf", closes=T0), now=T0)
    flush_until_settled(ledger, flusher)

    dlq = topics.dlq_prefix + "salesforce"
    [first] = consume_all(dlq, expected=1, timeout=5)
    letter = serde.deserialize_dead_letter(first.topic(), first.value())
    assert (letter.writeback_id, letter.error_code, letter.error_class) == (bad_id, REJECTED, ErrorClass.PERMANENT)
    assert ledger.get(bad_id)["status"] == "failed"
    assert notes(sim, bad_contact) == []

    group = f"replay-{uuid.uuid4().hex[:6]}"
    # replaying before the fix: it fails again and goes back with its replay count raised
    summary = replaying.run(replayer(kafka, ledger, serde, settings, flusher, group), [dlq], replaying.Filters())
    assert summary.verdicts == {replaying.Verdict.REPLAY: 1} and summary.outcomes == {"failed": 1}
    letters = [serde.deserialize_dead_letter(m.topic(), m.value()) for m in consume_all(dlq, expected=2, timeout=5)]
    assert [lt.replay_count for lt in letters] == [0, 1]

    sim.clear_faults()  # the cause is fixed
    summary = replaying.run(replayer(kafka, ledger, serde, settings, flusher, group), [dlq], replaying.Filters())
    assert summary.read == 1  # the group resumes after what it already replayed
    assert summary.outcomes == {"completed": 1}
    assert ledger.get(bad_id)["status"] == "completed"
    assert len(notes(sim, bad_contact)) == 1

    # every letter again, twice: nothing new reaches the CRM
    requests = len(sim.request_log)
    for _ in range(2):
        again = replaying.run(
            replayer(kafka, ledger, serde, settings, flusher, group), [dlq], replaying.Filters(), from_beginning=True
        )
        assert again.verdicts == {replaying.Verdict.DONE: 2}
    assert len(sim.request_log) == requests
    assert len(notes(sim, bad_contact)) == 1
    assert len(consume_all(dlq, expected=2, timeout=3)) == 2  # and no new dead letter


def test_replay_filters_and_limit_choose_letters_and_a_dry_run_changes_nothing(
    kafka, ledger, sim, flusher, serde, settings, topics
):
    contacts, events = unsubscribes_for(sim, 3)
    for contact in contacts:
        sim.reject_id(contact, REJECTED, "locked")
    ledger.insert(rows_for(events, "acme-sf", closes=T0), now=T0)
    flush_until_settled(ledger, flusher)
    sim.clear_faults()
    dlq = topics.dlq_prefix + "salesforce"
    ids = [writeback_id(e.event_id, "acme-sf") for e in events]

    dry = replaying.run(replayer(kafka, ledger, serde, settings, flusher, "g-dry"), [dlq], replaying.Filters(), dry_run=True)
    assert dry.verdicts == {replaying.Verdict.REPLAY: 3} and dry.outcomes == {}
    assert all(ledger.get(i)["status"] == "failed" for i in ids)

    none = replaying.run(replayer(kafka, ledger, serde, settings, flusher, "g-f"), [dlq], replaying.Filters(error_code="OTHER"))
    assert none.matched == 0

    one = replaying.run(
        replayer(kafka, ledger, serde, settings, flusher, "g-id"), [dlq], replaying.Filters(ids=frozenset({ids[1]}))
    )
    assert one.outcomes == {"completed": 1}
    assert [ledger.get(i)["status"] for i in ids] == ["failed", "completed", "failed"]

    limited = replaying.run(replayer(kafka, ledger, serde, settings, flusher, "g-lim"), [dlq], replaying.Filters(), limit=1)
    assert limited.matched == 1
    # the rest is still there for the same group's next run
    rest = replaying.run(replayer(kafka, ledger, serde, settings, flusher, "g-lim"), [dlq], replaying.Filters())
    assert rest.matched == 2
    both = Counter(limited.verdicts) + Counter(rest.verdicts)
    assert both == {replaying.Verdict.DONE: 1, replaying.Verdict.REPLAY: 2}  # ids[1] was done above
    assert all(ledger.get(i)["status"] == "completed" for i in ids)


def test_replay_recreates_rows_a_fresh_ledger_never_had(
    kafka, ledger, sim, flusher, serde, settings, topics, database_url, tmp_path, publisher
):
    from writeback.ledger import Ledger

    contacts, events = unsubscribes_for(sim, 2)
    sim.reject_id(contacts[0], REJECTED, "locked")
    ledger.insert(rows_for(events, "acme-sf", closes=T0), now=T0)
    flush_until_settled(ledger, flusher)
    sim.clear_faults()

    fresh = Ledger.connect(f"sqlite:///{tmp_path / 'restored.db'}")
    apply(fresh, settings, T0)
    other = Flusher(fresh, lambda: settings, open_adapter, DeadLetterSink(publisher, topics.dlq_prefix), serde)
    summary = replaying.run(
        replaying.Replayer(
            Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "g-fresh", "auto.offset.reset": "earliest", "enable.auto.commit": False}),
            fresh, serde, lambda: settings, other, wait=timedelta(seconds=20),
        ),
        [topics.dlq_prefix + "salesforce"],
        replaying.Filters(),
    )
    other.close()
    assert summary.verdicts == {replaying.Verdict.RECREATE: 1} and summary.outcomes == {"completed": 1}
    row = fresh.get(writeback_id(events[0].event_id, "acme-sf"))
    assert (row["status"], row["replay_count"]) == ("completed", 1)
    assert len(notes(sim, contacts[0])) == 1
    fresh.close()


def test_ingest_dead_letters_go_through_ingest_again_and_unreadable_records_come_back(
    kafka, ledger, sim, flusher, serde, settings, topics, publisher, consume_all
):
    """A record set aside at ingest that reads fine now (say, set aside while the registry had
    lost its schema) becomes its writeback on replay, once however often it is replayed; one
    that still cannot be read goes back to the ingest dead-letter topic byte for byte, its
    replay count raised. Letters of other kinds, and filters naming a connection, skip them."""
    _, [event] = unsubscribes_for(sim, 1)
    readable = OriginalRecord(
        topic=topics.subscriber, partition=0, offset=7, key=event.key().encode(),
        value=serde.serialize(event, topics.subscriber),
    )  # fmt: skip
    garbage = OriginalRecord(topic=topics.subscriber, partition=1, offset=3, key=b"k", value=b"\x00\x00\x00\x00\x01not avro")
    sink = DeadLetterSink(publisher, topics.dlq_prefix)
    sink.send(
        [
            dead_letters.undecodable(readable, dead_letters.UNDECODABLE, "schema id not found (HTTP 404)", T0),
            dead_letters.undecodable(garbage, dead_letters.UNDECODABLE, "corrupt body", T0),
        ]
    )
    dlq = topics.dlq_prefix + "ingest"
    probe = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "probe"})
    assert replaying.dead_letter_topics(probe, topics.dlq_prefix, ["ingest"]) == [dlq]
    assert dlq in replaying.dead_letter_topics(probe, topics.dlq_prefix)  # part of "all"
    probe.close()
    ingest = Ingest(ledger, serde, topics.models(), lambda: settings, sink)
    row_id = writeback_id(event.event_id, "acme-sf")

    skipped = replaying.run(replayer(kafka, ledger, serde, settings, flusher, "g-nf", ingest), [dlq], replaying.Filters(connection="acme-sf"))
    assert (skipped.read, skipped.matched) == (2, 0)
    without = replaying.run(replayer(kafka, ledger, serde, settings, flusher, "g-none"), [dlq], replaying.Filters(), dry_run=True)
    assert without.verdicts == {replaying.Verdict.UNUSABLE: 2}

    first = replaying.run(replayer(kafka, ledger, serde, settings, flusher, "g-ingest", ingest), [dlq], replaying.Filters())
    assert first.verdicts == {replaying.Verdict.REINGEST: 2}
    assert first.outcomes == {"ingested": 1, "dead-lettered again": 1}
    row = ledger.get(row_id)
    assert (row["status"], row["source_topic"], row["source_partition"], row["source_offset"]) == ("pending", topics.subscriber, 0, 7)
    letters = [serde.deserialize_dead_letter(m.topic(), m.value()) for m in consume_all(dlq, expected=3, timeout=5)]
    [back] = [lt for lt in letters if lt.replay_count == 1]  # partitions interleave: not by position
    assert (back.error_code, back.original) == (dead_letters.UNDECODABLE, (garbage,))

    again = replaying.run(
        replayer(kafka, ledger, serde, settings, flusher, "g-ingest", ingest), [dlq], replaying.Filters(), from_beginning=True
    )
    assert again.verdicts == {replaying.Verdict.REINGEST: 3}
    assert again.outcomes == {"ingested": 1, "dead-lettered again": 2}
    assert ledger.counts() == {("acme-sf", "pending"): 1}  # the readable record added nothing the second time
    counts = sorted(serde.deserialize_dead_letter(m.topic(), m.value()).replay_count for m in consume_all(dlq, expected=5, timeout=5))
    assert counts == [0, 0, 1, 1, 2]


def test_the_replay_command_shows_a_dry_run_and_a_summary(
    kafka, schema_registry, ledger, sim, flusher, settings, topics, database_url, publisher
):
    contacts, events = unsubscribes_for(sim, 1)
    sim.reject_id(contacts[0], REJECTED, "locked")
    ledger.insert(rows_for(events, "acme-sf", closes=T0), now=T0)
    flush_until_settled(ledger, flusher)
    sim.clear_faults()
    garbage = OriginalRecord(topic=topics.subscriber, partition=1, offset=3, key=b"k", value=b"not avro")
    DeadLetterSink(publisher, topics.dlq_prefix).send(
        [dead_letters.undecodable(garbage, dead_letters.UNDECODABLE, "value: not Confluent-framed Avro", T0)]
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "WRITEBACK_DEAD_LETTER_PREFIX": topics.dlq_prefix,
        "TEST_SF_SECRET": sim.client_secret,
    }
    args = [
        sys.executable, "-m", "writeback.cli", "replay", "--database", database_url,
        "--bootstrap", kafka.bootstrap, "--registry", schema_registry.url, "--group", f"cli-{uuid.uuid4().hex[:6]}",
    ]

    dry = subprocess.run([*args, "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    wid = writeback_id(events[0].event_id, "acme-sf")
    assert wid in dry.stdout and REJECTED in dry.stdout and "replay" in dry.stdout
    assert f"{topics.subscriber}[1]@3  ingest  UNDECODABLE" in dry.stdout
    assert "2 dead letters read, 2 matched: 1 reingest, 1 replay" in dry.stdout
    assert ledger.get(wid)["status"] == "failed"

    pushed = _PushCapture()  # where a Pushgateway would be: what the command pushes
    env["WRITEBACK_PUSHGATEWAY_URL"] = pushed.url
    started = time.monotonic()
    try:
        real = subprocess.run([*args, "--rate", "5"], env=env, capture_output=True, text=True, timeout=120)
    finally:
        pushed.close()
    assert real.returncode == 0, real.stderr
    assert "outcomes: 1 completed, 1 dead-lettered again" in real.stdout, real.stdout + real.stderr
    [(path, body)] = pushed.requests
    assert path == "/metrics/job/writeback_replay"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("writeback_replay_runs_total", ())] == 1
    assert samples[("writeback_replay_letters_total", (("verdict", "replay"),))] == 1
    assert samples[("writeback_replay_letters_total", (("verdict", "reingest"),))] == 1
    assert samples[("writeback_replay_outcomes_total", (("outcome", "completed"),))] == 1
    assert samples[("writeback_replay_outcomes_total", (("outcome", "dead-lettered again"),))] == 1
    assert time.monotonic() - started < 120
    assert ledger.get(wid)["status"] == "completed"
    assert len(notes(sim, contacts[0])) == 1
    assert sim.client_secret not in real.stdout + real.stderr


class _PushCapture:
    """A loopback HTTP server that records what is PUT to it, the way a Pushgateway receives it."""

    def __init__(self) -> None:
        import http.server
        import threading

        requests: list[tuple[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                requests.append((self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.requests = requests
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
