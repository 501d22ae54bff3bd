"""The Avro contract: valid for two independent implementations, documented, evolvable, and in
step with the pydantic models field by field."""

from __future__ import annotations

import copy
import io
import json
import types
import typing
import uuid
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import annotated_types
import avro.errors
import avro.io
import avro.name
import avro.schema
import fastavro
import pytest
from fastavro.schema import load_schema, to_parsing_canonical_form
from pydantic import BaseModel, ValidationError
from writeback_dev.samples import (
    all_event_samples,
    dead_letter_samples,
    subscriber_samples,
)

from writeback.contract import events
from writeback.contract.events import (
    ACTIVITY_TOPIC,
    COMMUNITY_TOPIC,
    MODELS_BY_TOPIC,
    SCHEMA_DIR,
    SUBSCRIBER_TOPIC,
    TOP_LEVEL_SCHEMAS,
    ActivityEvent,
    CommunityListEvent,
    DeadLetter,
    SubscriberEvent,
    parsed_schema,
    resolved_schema,
    schema_json,
    subject_for,
)

SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))
SHARED_FILES = [f for f in SCHEMA_FILES if f.stem not in TOP_LEVEL_SCHEMAS]
MODELS: list[type[events._AvroRecord]] = [
    SubscriberEvent,
    ActivityEvent,
    CommunityListEvent,
    DeadLetter,
]
NAMED_KINDS = {"record", "enum", "fixed"}


def _raw(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _walk_types(schema: Any) -> Iterator[dict[str, Any]]:
    """Every inline type definition (dict) in a schema, depth first."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _walk_types(branch)
    elif isinstance(schema, dict):
        yield schema
        for field in schema.get("fields", []):
            yield from _walk_types(field["type"])
        if "items" in schema:
            yield from _walk_types(schema["items"])
        if "values" in schema:
            yield from _walk_types(schema["values"])


def _fields(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for node in _walk_types(_raw(path)):
        for field in node.get("fields", []):
            yield f"{node['name']}.{field['name']}", field


# --------------------------------------------------------------------------------------------
# Every file is valid Avro, for fastavro and for Apache avro
# --------------------------------------------------------------------------------------------


def test_the_contract_has_the_expected_files() -> None:
    names = {f.stem for f in SCHEMA_FILES}
    assert set(TOP_LEVEL_SCHEMAS) <= names
    assert {"com.writeback.events.Recipient", "com.writeback.events.Source"} <= names
    for path in SCHEMA_FILES:
        raw = _raw(path)
        assert f"{raw['namespace']}.{raw['name']}" == path.stem, "file name must be the full name"


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_parses_with_fastavro(path: Path) -> None:
    assert load_schema(str(path))


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_parses_with_apache_avro(path: Path) -> None:
    names = avro.name.Names()
    for shared in SHARED_FILES:
        if shared != path:
            avro.schema.make_avsc_object(_raw(shared), names)
    parsed = avro.schema.make_avsc_object(_raw(path), names)
    assert parsed.fullname == path.stem


@pytest.mark.parametrize("name", TOP_LEVEL_SCHEMAS)
def test_registrable_json_is_self_contained_and_complete(name: str) -> None:
    text = schema_json(name)
    # Apache avro with no other schemas known: nothing is left unresolved.
    parsed = avro.schema.parse(text)
    assert parsed.fullname == name
    # Same schema as fastavro's own resolution from the files.
    assert to_parsing_canonical_form(json.loads(text)) == to_parsing_canonical_form(
        load_schema(str(SCHEMA_DIR / f"{name}.avsc"))
    )
    # Docs and custom properties survive (they are the taxonomy's source of truth).
    assert text.count('"doc"') == json.dumps(resolved_schema(name)).count('"doc"')
    assert '"doc"' in text
    if name.endswith("ActivityEvent"):
        assert '"x-code"' in text and '"x-labels"' in text and '"x-extensions"' in text
    if name.endswith("SubscriberEvent"):
        assert '"x-tracking-code"' in text and "Detail Unavailable" in text


def test_resolved_schema_is_a_private_copy() -> None:
    first = resolved_schema("SubscriberEvent")
    first["fields"].clear()
    assert resolved_schema("SubscriberEvent")["fields"]


# --------------------------------------------------------------------------------------------
# Conventions: docs, enums, nullability, named types
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_every_field_and_named_type_has_a_doc(path: Path) -> None:
    for where, field in _fields(path):
        assert str(field.get("doc", "")).strip(), f"{where} has no doc"
    for node in _walk_types(_raw(path)):
        if node.get("type") in NAMED_KINDS:
            assert str(node.get("doc", "")).strip(), f"{node['name']} has no doc"


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_enums_end_with_unknown_and_default_to_it(path: Path) -> None:
    for node in _walk_types(_raw(path)):
        if node.get("type") == "enum":
            assert node["symbols"][-1] == "UNKNOWN", node["name"]
            assert node.get("default") == "UNKNOWN", node["name"]
            assert len(set(node["symbols"])) == len(node["symbols"])


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_unions_are_nullable_with_null_default(path: Path) -> None:
    for where, field in _fields(path):
        if isinstance(field["type"], list):
            assert field["type"][0] == "null" and len(field["type"]) == 2, where
            assert "default" in field and field["default"] is None, where


@pytest.mark.parametrize("name", TOP_LEVEL_SCHEMAS)
def test_top_level_doc_states_the_evolution_rule(name: str) -> None:
    doc = _raw(SCHEMA_DIR / f"{name}.avsc")["doc"]
    assert '"default": "UNKNOWN"' in doc and "null" in doc


def test_each_named_type_is_defined_once() -> None:
    defined: list[str] = []
    for path in SCHEMA_FILES:
        for node in _walk_types(_raw(path)):
            if node.get("type") in NAMED_KINDS:
                defined.append(node["name"])
    assert len(defined) == len(set(defined)), sorted(defined)


def test_label_properties_only_name_real_symbols_and_differ_from_them() -> None:
    for name, node in events.named_types().items():
        for prop in ("x-labels", "x-code", "x-extensions", "x-tracking-code"):
            for symbol, text in node.get(prop, {}).items():
                assert symbol in node["symbols"], f"{name} {prop} names unknown {symbol}"
                if prop == "x-labels":
                    assert text != symbol, f"{name} x-labels repeats {symbol}"


@pytest.mark.parametrize("model", [SubscriberEvent, ActivityEvent, CommunityListEvent])
def test_topic_and_subject_are_documented_in_the_schema(model: type[events._Event]) -> None:
    doc = _raw(SCHEMA_DIR / f"{model.schema_name}.avsc")["doc"]
    assert model.topic in doc
    assert subject_for(model.topic) in doc


def test_topics() -> None:
    assert SUBSCRIBER_TOPIC == "writeback.subscriber-events"
    assert ACTIVITY_TOPIC == "writeback.activity-events"
    assert COMMUNITY_TOPIC == "writeback.community-list-events"
    assert events.DLQ_INGEST_TOPIC == "writeback.dlq.ingest"
    assert events.dead_letter_topic("salesforce") == "writeback.dlq.salesforce"
    assert subject_for(ACTIVITY_TOPIC) == "writeback.activity-events-value"
    assert dict(MODELS_BY_TOPIC) == {
        SUBSCRIBER_TOPIC: SubscriberEvent,
        ACTIVITY_TOPIC: ActivityEvent,
        COMMUNITY_TOPIC: CommunityListEvent,
    }
    with pytest.raises(ValueError, match="topic name"):
        events.dead_letter_topic("Sales Force")


# --------------------------------------------------------------------------------------------
# Models and schemas agree field by field
# --------------------------------------------------------------------------------------------

_INT_MAX = {"int": 2**31 - 1, "long": 2**63 - 1}
_PRIMITIVE_PY = {"string": str, "int": int, "long": int, "bytes": bytes, "boolean": bool}


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(args) == 1, annotation
        return _strip_annotated(args[0]), True
    return _strip_annotated(annotation), False


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _assert_type_agrees(
    where: str, schema_type: Any, annotation: Any, named: dict[str, Any]
) -> None:
    if isinstance(schema_type, str) and schema_type in named:
        schema_type = named[schema_type]
    if isinstance(schema_type, str):
        assert annotation is _PRIMITIVE_PY[schema_type], f"{where}: {annotation} vs {schema_type}"
        return
    kind = schema_type["type"]
    logical = schema_type.get("logicalType")
    if logical == "timestamp-millis":
        assert annotation is datetime, where
    elif logical == "uuid":
        assert annotation is str, where
    elif kind == "enum":
        assert isinstance(annotation, type) and issubclass(annotation, StrEnum), where
        assert annotation.__name__ == schema_type["name"].rsplit(".", 1)[-1], where
        assert [m.value for m in annotation] == schema_type["symbols"], where
    elif kind == "record":
        _assert_record_agrees(schema_type, annotation, named)
    elif kind == "array":
        assert typing.get_origin(annotation) is tuple, where
        item, ellipsis = typing.get_args(annotation)
        assert ellipsis is Ellipsis, where
        _assert_type_agrees(where + "[]", schema_type["items"], _strip_annotated(item), named)
    else:
        _assert_type_agrees(where, kind, annotation, named)


def _assert_record_agrees(record: dict[str, Any], model: Any, named: dict[str, Any]) -> None:
    assert isinstance(model, type) and issubclass(model, BaseModel), record["name"]
    assert model.__name__ == record["name"].rsplit(".", 1)[-1]
    model_fields = model.model_fields
    assert list(model_fields) == [f["name"] for f in record["fields"]], record["name"]
    for field in record["fields"]:
        where = f"{record['name']}.{field['name']}"
        info = model_fields[field["name"]]
        annotation, optional = _unwrap_optional(info.annotation)
        schema_type = field["type"]
        nullable = isinstance(schema_type, list)
        assert optional == nullable, f"{where}: nullability differs"
        if nullable:
            assert info.default is None and not info.is_required(), where
            schema_type = schema_type[1]
        elif "default" in field:
            assert info.default == field["default"], where
        else:
            assert info.is_required(), f"{where}: required in the schema, optional in the model"
        _assert_type_agrees(where, schema_type, annotation, named)
        if isinstance(schema_type, str) and schema_type in _INT_MAX:
            bounds = [m.le for m in info.metadata if isinstance(m, annotated_types.Le)]
            assert bounds == [_INT_MAX[schema_type]], (
                f"{where}: model range is not Avro {schema_type}"
            )


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_model_matches_schema_field_by_field(model: type[events._AvroRecord]) -> None:
    schema = resolved_schema(model.schema_name)
    named: dict[str, Any] = {}
    fastavro.parse_schema(copy.deepcopy(schema), named_schemas=named)
    _assert_record_agrees(schema, model, named)


def test_every_schema_enum_has_a_python_enum() -> None:
    enums = {n.rsplit(".", 1)[-1] for n, t in events.named_types().items() if t["type"] == "enum"}
    for name in enums:
        python_enum = getattr(events, name)
        assert [m.value for m in python_enum] == list(events.enum_symbols(name))


def test_a_hand_declared_enum_that_drifts_fails_at_import() -> None:
    class Source(StrEnum):
        ADMIN = "ADMIN"

    with pytest.raises(RuntimeError, match="declares"):
        events._mirrors_schema(Source)


# --------------------------------------------------------------------------------------------
# Round trips: model -> fastavro -> Apache avro -> model
# --------------------------------------------------------------------------------------------


def _fastavro_bytes(schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def _fastavro_read(data: bytes, writer: Any, reader: Any = None) -> dict[str, Any]:
    record: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(data), writer, reader)
    return record


def _apache(name: str) -> avro.schema.Schema:
    return avro.schema.parse(schema_json(name))


def _apache_read(name: str, data: bytes) -> dict[str, Any]:
    record: dict[str, Any] = avro.io.DatumReader(_apache(name)).read(
        avro.io.BinaryDecoder(io.BytesIO(data))
    )
    return record


def _apache_bytes(name: str, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    avro.io.DatumWriter(_apache(name)).write(record, avro.io.BinaryEncoder(out))
    return out.getvalue()


def _plain(value: Any) -> Any:
    """Normalise the implementations' small differences (fastavro returns uuid.UUID)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


ROUND_TRIP_SAMPLES = [*all_event_samples(), *dead_letter_samples()]


@pytest.mark.parametrize(
    "sample",
    ROUND_TRIP_SAMPLES,
    ids=lambda s: f"{type(s).__name__}-{s.to_avro().get('event_id', '')}",
)
def test_round_trip_through_both_implementations(sample: events._AvroRecord) -> None:
    name = sample.schema_name
    record = sample.to_avro()
    data = _fastavro_bytes(parsed_schema(name), record)

    # Avro's binary encoding is canonical: an independent encoder must produce the same bytes.
    assert _apache_bytes(name, record) == data

    by_fastavro = _plain(_fastavro_read(data, parsed_schema(name)))
    by_apache = _plain(_apache_read(name, data))
    assert by_apache == by_fastavro == _plain(record)

    assert type(sample).from_avro(by_apache) == sample
    assert type(sample).from_avro(_fastavro_read(data, parsed_schema(name))) == sample


# --------------------------------------------------------------------------------------------
# Evolution: old readers, new writers
# --------------------------------------------------------------------------------------------

NEW_FIELD = {
    "name": "campaign_id",
    "type": ["null", "string"],
    "default": None,
    "doc": "A field added after the reader was built.",
}


def _with_new_field() -> dict[str, Any]:
    newer = resolved_schema("SubscriberEvent")
    newer["fields"].append(NEW_FIELD)
    return newer


def test_old_reader_decodes_data_from_a_newer_writer() -> None:
    sample = subscriber_samples()[0]
    writer = fastavro.parse_schema(_with_new_field())
    old_reader = parsed_schema(SubscriberEvent.schema_name)
    data = _fastavro_bytes(writer, {**sample.to_avro(), "campaign_id": "cmp-77"})

    decoded = _fastavro_read(data, writer, old_reader)
    assert "campaign_id" not in decoded
    assert SubscriberEvent.from_avro(decoded) == sample


def test_records_decoded_with_a_newer_writers_schema_still_load() -> None:
    """A consumer that decodes with the writer's schema (no reader schema) sees new fields;
    from_avro ignores them, as BACKWARD compatibility promises old consumers."""
    sample = subscriber_samples()[0]
    newer = _with_new_field()
    recipient = next(f for f in newer["fields"] if f["name"] == "recipient")["type"]
    recipient["fields"].append({**NEW_FIELD, "name": "phone"})
    writer = fastavro.parse_schema(newer)
    record = sample.to_avro()
    record["recipient"]["phone"] = "+1 555 0100"
    data = _fastavro_bytes(writer, {**record, "campaign_id": "cmp-77"})

    decoded = _fastavro_read(data, writer)
    assert decoded["campaign_id"] == "cmp-77" and decoded["recipient"]["phone"]
    assert SubscriberEvent.from_avro(decoded) == sample


def test_new_reader_decodes_data_from_an_older_writer() -> None:
    """BACKWARD compatibility: the reader's new optional field takes its default."""
    sample = subscriber_samples()[0]
    old_writer = parsed_schema(SubscriberEvent.schema_name)
    data = _fastavro_bytes(old_writer, sample.to_avro())

    decoded = _fastavro_read(data, old_writer, fastavro.parse_schema(_with_new_field()))
    assert decoded["campaign_id"] is None


def _with_new_source_symbol() -> dict[str, Any]:
    newer = resolved_schema("SubscriberEvent")
    source = next(f for f in newer["fields"] if f["name"] == "source")["type"]
    source["symbols"].insert(-1, "WEBHOOK")
    return newer


def test_enum_symbol_unknown_to_the_reader_becomes_unknown() -> None:
    sample = subscriber_samples()[0]
    writer = fastavro.parse_schema(_with_new_source_symbol())
    data = _fastavro_bytes(writer, {**sample.to_avro(), "source": "WEBHOOK"})

    decoded = _fastavro_read(data, writer, parsed_schema(SubscriberEvent.schema_name))
    assert decoded["source"] == "UNKNOWN"

    # Old readers can decode it, but it is not an event the service can act on.
    with pytest.raises(ValidationError) as caught:
        SubscriberEvent.from_avro(decoded)
    assert "source" in str(caught.value) and "UNKNOWN" in str(caught.value)


@pytest.mark.xfail(
    raises=avro.errors.SchemaResolutionException,
    strict=False,
    reason="Apache avro for Python (1.12) ignores the reader's enum default when resolving; "
    "the Avro spec and fastavro (which the service decodes with) apply it",
)
def test_apache_avro_also_resolves_unknown_symbols_to_the_default() -> None:
    sample = subscriber_samples()[0]
    writer_json = json.dumps(_with_new_source_symbol())
    record = {**sample.to_avro(), "source": "WEBHOOK"}
    data = _fastavro_bytes(fastavro.parse_schema(json.loads(writer_json)), record)
    reader = avro.io.DatumReader(
        avro.schema.parse(writer_json), _apache(SubscriberEvent.schema_name)
    )
    decoded = reader.read(avro.io.BinaryDecoder(io.BytesIO(data)))
    assert decoded["source"] == "UNKNOWN"
