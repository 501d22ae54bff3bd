"""The Avro contract in a real schema registry, and records through a real broker.

Specifies: `writeback schemas register` / `check` against the registry; schema evolution under
BACKWARD (an optional field with a default is accepted and old readers ignore it, a field without
a default is refused); what an old reader makes of an enum symbol added after it; and how the
ingest path's decoder reports records it cannot decode.

The registry is Apicurio 2.4.2 behind its Confluent-compatible API (see shared/notes/local-stack.md):
assertions stick to what the Confluent API promises and note where Apicurio's answers differ.
The session's registry is shared with other tests, so nothing here assumes a subject is absent
unless the subject is this test's own (named after a fresh `topic`).
"""

from __future__ import annotations

import copy
import http.server
import io
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fastavro
import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from pydantic import ValidationError
from typer.testing import CliRunner
from writeback_dev import samples

from writeback.cli import app
from writeback.contract import schema_registry as registry_module
from writeback.contract.events import (
    SubscriberEvent,
    enum_symbols,
    resolved_schema,
    schema_json,
    validation_summary,
)
from writeback.contract.schema_registry import SUBJECT_SCHEMAS
from writeback.contract.serde import EventSerde, registry_client
from writeback.errors import DecodeError, RegistryUnavailable

pytestmark = pytest.mark.kafka

# `ok <subject>: <detail>` / `FAIL <subject>: <detail>`, one line per subject (cli._report_subjects)
_LINE = re.compile(r"^(ok |FAIL) (\S+): (.*)$")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def client(schema_registry) -> SchemaRegistryClient:
    return registry_client(schema_registry.url)


def _cli(schema_registry, *args: str) -> tuple[int, dict[str, tuple[bool, str]], str]:
    """Run `writeback schemas ...`; return the exit code and {subject: (ok, detail)}."""
    result = CliRunner().invoke(
        app, ["schemas", *args], env={"WRITEBACK_SCHEMA_REGISTRY_URL": schema_registry.url}
    )
    lines: dict[str, tuple[bool, str]] = {}
    for line in result.stdout.splitlines():
        match = _LINE.match(line)
        assert match, f"unexpected output line {line!r}"
        lines[match[2]] = (match[1] == "ok ", match[3])
    return result.exit_code, lines, result.output


def _avro(schema: dict[str, Any]) -> Schema:
    return Schema(json.dumps(schema), "AVRO")


def _with_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    evolved = copy.deepcopy(schema)
    evolved["fields"].append(field)
    return evolved


def _enum_with(schema: dict[str, Any], enum_name: str, symbol: str) -> dict[str, Any]:
    """`schema` with `symbol` added to the named enum (before UNKNOWN, as a producer team would)."""
    evolved = copy.deepcopy(schema)
    found = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "enum" and node.get("name") in (enum_name, f"com.writeback.events.{enum_name}"):
                node["symbols"].insert(node["symbols"].index("UNKNOWN"), symbol)
                found.append(node)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(evolved)
    assert len(found) == 1, f"enum {enum_name} defined {len(found)} times"
    return evolved


def _writer(client: SchemaRegistryClient, schema: dict[str, Any], to_dict: Callable) -> AvroSerializer:
    """A producer's serializer for a schema that must already be registered (looked up, never
    auto-registered: registering is the step under test)."""
    return AvroSerializer(
        client, json.dumps(schema), to_dict=to_dict, conf={"auto.register.schemas": False}
    )


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "log_level": 0})
    for key, value in records:
        producer.produce(topic, value, key=key)
    assert producer.flush(30) == 0


def _schema_id(value: bytes) -> int:
    assert value[0] == 0, "not Confluent-framed"
    return int.from_bytes(value[1:5], "big")


# --------------------------------------------------------------------------------------------
# `writeback schemas register` / `check`
# --------------------------------------------------------------------------------------------


def test_schemas_register_sets_backward_on_every_subject_and_is_idempotent(schema_registry, client):
    code, first, output = _cli(schema_registry, "register")
    assert code == 0, output
    assert set(first) == set(SUBJECT_SCHEMAS)
    ids: dict[str, int] = {}
    for subject, (ok, detail) in first.items():
        assert ok, f"{subject}: {detail}"
        match = re.fullmatch(r"schema id (\d+)", detail)
        assert match, detail
        ids[subject] = int(match[1])

    versions = {}
    for subject, name in SUBJECT_SCHEMAS.items():
        assert client.get_compatibility(subject) == "BACKWARD", subject
        # the id printed is the id of exactly our schema under that subject ...
        assert client.lookup_schema(subject, Schema(schema_json(name), "AVRO")).schema_id == ids[subject]
        # ... and what is stored is the whole contract, docs and x- properties included
        stored = json.loads(client.get_schema(ids[subject]).schema_str)
        assert stored == json.loads(schema_json(name)), subject
        versions[subject] = client.get_versions(subject)

    # the raw Confluent API agrees (GET /config/{subject})
    some_subject = next(iter(SUBJECT_SCHEMAS))
    config = httpx.get(f"{schema_registry.url}/config/{some_subject}", timeout=10).json()
    assert config["compatibilityLevel"] == "BACKWARD"

    code, again, output = _cli(schema_registry, "register")
    assert code == 0, output
    assert again == first, "registering an unchanged contract again must change nothing"
    assert {subject: client.get_versions(subject) for subject in SUBJECT_SCHEMAS} == versions

    code, checked, output = _cli(schema_registry, "check")
    assert code == 0, output
    assert checked == {subject: (True, "compatible") for subject in SUBJECT_SCHEMAS}


def test_schemas_check_and_register_report_an_incompatible_subject_and_change_nothing(
    schema_registry, client, topic, monkeypatch
):
    """`check_all`/`register_all` only know the real subjects; pointing SUBJECT_SCHEMAS at this
    test's own subjects shows what the commands say when the registry holds something else."""
    clashing, fresh = f"{topic}-value", f"{topic}-fresh-value"
    # A registered version without account_id: our schema requires account_id (no default), so
    # it cannot read that version's data: not BACKWARD compatible.
    older = resolved_schema("SubscriberEvent")
    older["fields"] = [f for f in older["fields"] if f["name"] != "account_id"]
    client.set_compatibility(subject_name=clashing, level="BACKWARD")
    client.register_schema(clashing, _avro(older))
    monkeypatch.setattr(
        registry_module, "SUBJECT_SCHEMAS", {clashing: "SubscriberEvent", fresh: "SubscriberEvent"}
    )

    code, checked, output = _cli(schema_registry, "check")
    assert code == 1, output
    assert checked == {
        clashing: (False, "not BACKWARD compatible with the registered version"),
        fresh: (True, "new subject"),
    }
    with pytest.raises(SchemaRegistryError) as absent:
        client.get_latest_version(fresh)  # check registers nothing
    assert absent.value.http_status_code == 404

    code, registered, output = _cli(schema_registry, "register")
    assert code == 1, output
    ok, detail = registered[clashing]
    assert not ok and detail.startswith("HTTP 409: "), detail
    assert client.get_versions(clashing) == [1]
    assert registered[fresh][0] and client.get_compatibility(fresh) == "BACKWARD"


# --------------------------------------------------------------------------------------------
# Evolution under BACKWARD, through the registry and the broker
# --------------------------------------------------------------------------------------------

CAMPAIGN_FIELD = {
    "name": "campaign_id",
    "type": ["null", "string"],
    "default": None,
    "doc": "Campaign the change came from (added in v2).",
}
PRIORITY_FIELD = {"name": "priority", "type": "int", "doc": "Added in v3 without a default."}


def test_optional_field_evolves_and_old_readers_ignore_it_while_a_required_field_is_refused(
    kafka, schema_registry, client, topic, consume_all
):
    subject = f"{topic}-value"
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    assert client.get_compatibility(subject) == "BACKWARD"
    v1 = resolved_schema("SubscriberEvent")
    v1_id = client.register_schema(subject, _avro(v1))

    # v2: a new optional field with a default is BACKWARD compatible and becomes version 2
    v2 = _with_field(v1, CAMPAIGN_FIELD)
    assert client.test_compatibility(subject, _avro(v2)) is True
    v2_id = client.register_schema(subject, _avro(v2))
    assert v2_id != v1_id
    assert client.get_versions(subject) == [1, 2]
    assert client.get_latest_version(subject).schema_id == v2_id

    # a v2 producer frames its records with v2's id; they go through the real broker
    events = samples.subscriber_samples()[:3]
    serialize = _writer(client, v2, lambda e, _ctx: {**e.to_avro(), "campaign_id": "spring-2026"})
    ctx = SerializationContext(topic, MessageField.VALUE)
    # keyed by event id here (samples share recipients), to pair what arrives with what was sent
    _produce(kafka.bootstrap, topic, [(e.event_id.encode(), serialize(e, ctx)) for e in events])
    received = consume_all(topic, expected=len(events))
    assert len(received) == len(events)
    by_key = {m.key(): m.value() for m in received}
    values = [by_key[e.event_id.encode()] for e in events]
    assert {_schema_id(v) for v in values} == {v2_id}

    serde = EventSerde(client)
    v1_reader = AvroDeserializer(client, json.dumps(v1))
    for event, value in zip(events, values, strict=True):
        # the ingest decoder (writer's schema, then the model) ignores the field it does not know
        assert serde.decode_raw(topic, value)["campaign_id"] == "spring-2026"
        assert serde.deserialize(topic, value, SubscriberEvent) == event
        # a reader holding only v1 resolves v2 data to v1: the new field is not there at all
        old = v1_reader(value, ctx)
        assert "campaign_id" not in old
        assert SubscriberEvent.from_avro(old) == event
        # the same through plain fastavro schema resolution (writer schema fetched by id)
        writer = fastavro.parse_schema(json.loads(client.get_schema(_schema_id(value)).schema_str))
        plain = fastavro.schemaless_reader(io.BytesIO(value[5:]), writer, fastavro.parse_schema(v1))
        assert set(plain) == {f["name"] for f in v1["fields"]}

    # v3: a field without a default cannot be read from v1/v2 data: refused, nothing registered
    v3 = _with_field(v2, PRIORITY_FIELD)
    assert client.test_compatibility(subject, _avro(v3)) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, _avro(v3))
    assert refused.value.http_status_code == 409
    # Confluent answers error_code 409; Apicurio 2.4.2 answers 0 with its own wording
    assert refused.value.error_code in (409, 0)
    assert "priority" in refused.value.error_message
    assert client.get_versions(subject) == [1, 2]
    assert client.get_latest_version(subject).schema_id == v2_id


def test_a_subject_created_by_auto_registration_is_guarded_by_the_global_backward_rule(
    schema_registry, client
):
    """The Publisher auto-registers on first publish, without setting the subject's own level:
    the registry's global BACKWARD (Confluent's default; set by the local stack, since Apicurio's
    default is NONE) must still refuse an incompatible change on that subject.

    Only enforcement is asserted. Reading the level back is not reliable on Apicurio 2.4.2: for a
    subject without its own config, GET /config/{subject} answers NONE (even with
    defaultToGlobal=true) while BACKWARD is enforced; Confluent answers 40408 or the global level.
    """
    topic = f"test-registry.auto.{uuid.uuid4().hex[:8]}"
    subject = f"{topic}-value"
    EventSerde(client).serialize(samples.subscriber_samples()[0], topic)  # auto-registers v1
    assert client.get_versions(subject) == [1]
    required = _with_field(resolved_schema("SubscriberEvent"), PRIORITY_FIELD)
    assert client.test_compatibility(subject, _avro(required)) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, _avro(required))
    assert refused.value.http_status_code == 409
    assert client.get_versions(subject) == [1]


# --------------------------------------------------------------------------------------------
# Enum symbols added by a newer writer
# --------------------------------------------------------------------------------------------


def test_enum_symbol_from_a_newer_writer_is_unknown_to_old_readers_and_rejected_by_ingest(
    kafka, schema_registry, client, topic, consume_all
):
    subject = f"{topic}-value"
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    v1 = resolved_schema("SubscriberEvent")
    client.register_schema(subject, _avro(v1))
    newer = _enum_with(_enum_with(v1, "SubscriberAction", "OPT_DOWN"), "RecordType", "PERSON_ACCOUNT")
    assert client.test_compatibility(subject, _avro(newer)) is True  # adding symbols is BACKWARD
    newer_id = client.register_schema(subject, _avro(newer))

    lead = next(e for e in samples.subscriber_samples() if e.recipient.record_type is not None)
    new_action = {**lead.to_avro(), "action": "OPT_DOWN"}
    new_record_type = lead.to_avro()
    new_record_type["recipient"] = {**new_record_type["recipient"], "record_type": "PERSON_ACCOUNT"}
    ctx = SerializationContext(topic, MessageField.VALUE)
    serialize = _writer(client, newer, lambda record, _ctx: record)
    _produce(kafka.bootstrap, topic, [(b"action", serialize(new_action, ctx)), (b"record_type", serialize(new_record_type, ctx))])
    values = {m.key(): m.value() for m in consume_all(topic, expected=2)}
    assert set(values) == {b"action", b"record_type"}
    assert {_schema_id(v) for v in values.values()} == {newer_id}

    # fastavro schema resolution against the v1 reader: the enum default, UNKNOWN
    writer = fastavro.parse_schema(json.loads(client.get_schema(newer_id).schema_str))
    reader = fastavro.parse_schema(v1)
    as_old = {k: fastavro.schemaless_reader(io.BytesIO(v[5:]), writer, reader) for k, v in values.items()}
    assert as_old[b"action"]["action"] == "UNKNOWN"
    assert as_old[b"record_type"]["recipient"]["record_type"] == "UNKNOWN"
    # ... and the models reject UNKNOWN with a message that says what it means
    v1_reader = AvroDeserializer(client, json.dumps(v1))
    for key, field in ((b"action", "action"), (b"record_type", "recipient.record_type")):
        record = v1_reader(values[key], ctx)
        with pytest.raises(ValidationError) as rejected:
            SubscriberEvent.from_avro(record)
        assert validation_summary(rejected.value) == (
            f"{field}: UNKNOWN is what an old reader sees for a symbol added after it was built; "
            "it is not valid input"
        )

    # What the ingest decoder really does: EventSerde decodes with the WRITER's schema (no reader
    # schema), so the model sees the new symbol itself, not UNKNOWN, and rejects it by name.
    serde = EventSerde(client)
    known_actions = ", ".join(s for s in enum_symbols("SubscriberAction") if s != "UNKNOWN")
    with pytest.raises(DecodeError) as action_error:
        serde.deserialize(topic, values[b"action"], SubscriberEvent)
    assert str(action_error.value) == (
        f"action: unknown SubscriberAction 'OPT_DOWN'; expected one of {known_actions}"
    )
    with pytest.raises(DecodeError) as record_type_error:
        serde.deserialize(topic, values[b"record_type"], SubscriberEvent)
    assert str(record_type_error.value).startswith(
        "recipient.record_type: unknown RecordType 'PERSON_ACCOUNT'; expected one of CONTACT, LEAD"
    )


# --------------------------------------------------------------------------------------------
# What the ingest decoder says about records it cannot decode
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def framed(schema_registry) -> tuple[SubscriberEvent, bytes, str]:
    """A real framed value (schema registered under a topic of this module) and its event."""
    event = samples.subscriber_samples()[0]
    topic = f"test-registry.decode-errors.{uuid.uuid4().hex[:8]}"  # the subject only; no topic needed
    return event, EventSerde(registry_client(schema_registry.url)).serialize(event, topic), topic


def _contents(event: SubscriberEvent) -> list[str]:
    """Strings of the record that an error message must never echo (PII and identifiers)."""
    found = [event.event_id, event.account_id, event.recipient.email, event.recipient.integration_id, event.reason]
    return [s for s in found if s]


def _echoes(message: str, event: SubscriberEvent) -> bool:
    """Whether `message` repeats any 8 consecutive characters of the record's strings (a corrupt
    record differs from the original by a byte or two, so whole-string matching is not enough)."""
    return any(
        s[i : i + 8] in message for s in _contents(event) for i in range(max(1, len(s) - 7))
    )


def _decode_error(serde: EventSerde, topic: str, value: bytes | None) -> str:
    with pytest.raises(DecodeError) as raised:
        serde.deserialize(topic, value, SubscriberEvent)
    return str(raised.value)


def test_undecodable_values_are_decode_errors_that_name_the_problem(client, framed):
    event, value, topic = framed
    serde = EventSerde(client)
    assert serde.deserialize(topic, value, SubscriberEvent) == event
    schema_id = _schema_id(value)
    body = value[5:]
    not_framed = "value: not Confluent-framed Avro (magic byte 0 and schema id expected)"

    messages = {
        "tombstone": (None, "value: empty (tombstone) record"),
        "empty": (b"", not_framed),
        "json": (json.dumps(event.to_json()).encode(), not_framed),
        "magic byte 1": (b"\x01" + value[1:], not_framed),
        "avro without framing": (body, not_framed),
        "unknown schema id": (
            b"\x00" + (999999).to_bytes(4, "big") + body,
            "value: cannot decode with schema id 999999: not found in the schema registry (HTTP 404: ",
        ),
        "header only": (value[:5], f"value: cannot decode with schema id {schema_id}: "),
    }
    for case, (bad, expected) in messages.items():
        message = _decode_error(serde, topic, bad)
        assert message.startswith(expected), f"{case}: {message}"
        assert not _echoes(message, event), f"{case} echoes the record: {message}"


def test_every_truncation_of_a_value_is_a_decode_error(client, framed):
    event, value, topic = framed
    serde = EventSerde(client)
    prefix = f"value: cannot decode with schema id {_schema_id(value)}: "
    reasons = set()
    for cut in range(6, len(value)):
        message = _decode_error(serde, topic, value[:cut])
        assert message.startswith(prefix), f"cut at {cut}: {message}"
        assert not _echoes(message, event), f"cut at {cut} echoes the record: {message}"
        reasons.add(message.removeprefix(prefix).split(" ")[0])
    assert "EOFError" in reasons  # most cuts end inside a string: fastavro reports the short read


def test_random_bodies_under_a_real_schema_id_never_crash_the_decoder(client, framed):
    """Corrupt bodies decode to a DecodeError (or, rarely, to a valid event), never anything else."""
    event, value, topic = framed
    serde = EventSerde(client)
    rng = random.Random(20261123)
    outcomes = {"decode error": 0, "event": 0}
    for _ in range(500):
        body = bytearray(value[5:])
        for _ in range(rng.randint(1, 8)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        try:
            serde.deserialize(topic, value[:5] + bytes(body), SubscriberEvent)
            outcomes["event"] += 1
        except DecodeError as exc:
            outcomes["decode error"] += 1
            assert not _echoes(str(exc), event), str(exc)
    assert outcomes["decode error"] > 0


class _FailingRegistry(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b'{"error_code": 50302, "message": "registry is restarting"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_registry_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7"
    server.shutdown()
    server.server_close()


def test_a_failing_or_unreachable_registry_is_not_blamed_on_the_record(framed, failing_registry_url):
    """Ingest dead-letters DecodeErrors; a registry outage must surface as RegistryUnavailable so
    good records are retried instead."""
    _event, value, topic = framed
    failing = EventSerde(SchemaRegistryClient({"url": failing_registry_url, "max.retries": 0}))
    with pytest.raises(RegistryUnavailable, match=f"while decoding {re.escape(topic)}"):
        failing.deserialize(topic, value, SubscriberEvent)
    unreachable = EventSerde(SchemaRegistryClient({"url": "http://127.0.0.1:1/apis/ccompat/v7", "max.retries": 0}))
    with pytest.raises(RegistryUnavailable, match=f"while decoding {re.escape(topic)}"):
        unreachable.deserialize(topic, value, SubscriberEvent)
