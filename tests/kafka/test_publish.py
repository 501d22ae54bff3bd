"""Publishing through the real broker and registry: every event type survives the trip, bad
input is reported by line, and valid lines around it are published exactly once."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from writeback_dev import samples

from writeback.cli import app
from writeback.contract.events import Event
from writeback.contract.serde import EventSerde, registry_client
from writeback.errors import BrokerUnavailable, RegistryUnavailable
from writeback.kafka.producer import Publisher

ALL_SAMPLES = samples.all_event_samples()


def _sample_id(event: Event) -> str:
    detail = [getattr(event, name, None) for name in ("action", "suppression", "subcode", "change")]
    scope = getattr(event, "scope", None)
    click = getattr(event, "click", None)
    detail += [scope.kind if scope else None, click.target if click else None]
    return "-".join([event.event_type, *(str(d) for d in detail if d is not None)])


@pytest.fixture(scope="module")
def round_tripped(kafka, schema_registry, request):
    """Publish every sample once (to per-type topics of this module) and decode what arrives."""
    consume_all = request.getfixturevalue("consume_all")
    topic_factory = request.getfixturevalue("topic_factory")
    serde = EventSerde(registry_client(schema_registry.url))
    topics = {model: topic_factory(f"rt-{model.event_type}") for model in {type(e) for e in ALL_SAMPLES}}
    with Publisher(kafka.bootstrap, serde) as publisher:
        for event in ALL_SAMPLES:
            publisher.publish(event, topic=topics[type(event)])
        publisher.flush()
    decoded: dict[str, tuple[Event, object]] = {}
    for model, topic in topics.items():
        expected = sum(isinstance(e, model) for e in ALL_SAMPLES)
        for message in consume_all(topic, expected=expected):
            event = serde.deserialize(topic, message.value(), model)
            decoded[str(event.event_id)] = (event, message)
    return decoded


@pytest.mark.parametrize("event", ALL_SAMPLES, ids=_sample_id)
def test_every_sample_event_round_trips_through_broker_and_registry(round_tripped, event):
    received, message = round_tripped[str(event.event_id)]
    assert received == event
    assert message.key() == event.key().encode()
    assert message.value()[0] == 0


def test_samples_cover_every_schema_enum_symbol():
    """The parametrised round trip above covers the whole vocabulary of the contract."""
    from writeback.contract.events import enum_symbols

    activity = {str(e.subcode) for e in ALL_SAMPLES if e.event_type == "activity"}
    assert activity == set(enum_symbols("ActivitySubcode")) - {"UNKNOWN"}
    subscriber = [e for e in ALL_SAMPLES if e.event_type == "subscriber"]
    assert {str(e.action) for e in subscriber} == set(enum_symbols("SubscriberAction")) - {"UNKNOWN"}
    assert {str(e.suppression) for e in subscriber if e.suppression} == set(
        enum_symbols("SuppressionSubtype")
    ) - {"UNKNOWN"}
    assert {str(e.scope.kind) for e in subscriber if e.scope} == set(enum_symbols("ScopeKind")) - {"UNKNOWN"}


def _env(kafka, schema_registry):
    return {
        "WRITEBACK_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WRITEBACK_SCHEMA_REGISTRY_URL": schema_registry.url,
    }


def test_publish_reports_bad_lines_and_publishes_every_valid_line_exactly_once(
    kafka, schema_registry, topic, tmp_path, consume_all
):
    good = [e.to_json() for e in samples.subscriber_samples()[:4]]
    lines = [
        json.dumps(good[0]),
        json.dumps({**good[1], "action": "UNSUBSCRIBE_FOREVER"}),
        json.dumps(good[1]),
        json.dumps({**good[2], "recipient": {}}),
        json.dumps({**good[2], "event_id": "not-a-uuid"}),
        json.dumps({**good[2], "occurred_at": "2026-03-08T14:30:00"}),
        json.dumps({**good[2], "reason": 42}),
        "{not json",
        json.dumps(good[2]),
        json.dumps(good[3]),
    ]
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(
        app, ["publish", str(path), "--topic", topic], env=_env(kafka, schema_registry)
    )
    assert result.exit_code == 1
    errors = result.stderr
    assert "line 2: action:" in errors
    assert "line 4: recipient: needs at least one of email and integration_id" in errors
    assert "line 5: event_id:" in errors and "UUID" in errors
    assert "line 6: occurred_at: naive timestamp" in errors
    assert "line 7: reason:" in errors
    assert "line 8: not valid JSON" in errors
    assert "4 published, 6 rejected" in result.stdout
    received = consume_all(topic, expected=4)
    ids = [json.loads(json.dumps(g))["event_id"] for g in good]
    serde = EventSerde(registry_client(schema_registry.url))
    got = sorted(str(serde.deserialize(topic, m.value(), type(samples.subscriber_samples()[0])).event_id) for m in received)
    assert got == sorted(ids)


def test_dry_run_validates_without_publishing(kafka, schema_registry, topic, tmp_path, consume_all):
    path = tmp_path / "events.json"
    path.write_text(json.dumps([e.to_json() for e in samples.activity_samples()[:3]], indent=2))
    result = CliRunner().invoke(
        app, ["publish", str(path), "--topic", topic, "--dry-run"], env=_env(kafka, schema_registry)
    )
    assert result.exit_code == 0, result.output
    assert "3 valid, 0 rejected" in result.stdout
    assert consume_all(topic, timeout=3) == []


def test_unreachable_broker_and_registry_give_clear_errors(kafka, schema_registry, topic):
    serde = EventSerde(registry_client(schema_registry.url))
    with pytest.raises(BrokerUnavailable, match="127.0.0.1:1 unreachable"):
        Publisher("127.0.0.1:1", serde, connect_timeout=2)
    dead_registry = EventSerde(registry_client("http://127.0.0.1:1/apis/ccompat/v7"))
    with Publisher(kafka.bootstrap, dead_registry) as publisher:
        with pytest.raises(RegistryUnavailable, match="schema registry unreachable"):
            publisher.publish(samples.subscriber_samples()[0], topic=topic)
