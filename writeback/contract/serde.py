"""Events on the wire: Confluent framing (magic 0, schema id, Avro body) through the registry.

confluent-kafka's own Avro serializers do the framing, registry lookups and caching; this
module only binds them to our event models and turns their failures into `DecodeError`s that
say what was wrong with the record.

Decoding has one shortcut. confluent-kafka's `AvroDeserializer` walks the whole schema on every
record (inline tags for field-level rules, schema expansion) even when the schema has no rules,
which costs about five times the Avro decoding itself. So the first record of each (topic,
schema id) goes through the deserializer, and when its writer schema is a plain Avro record (no
references, no rules) later records of that pair are read by fastavro directly with the same
parsed writer schema: what the deserializer itself does for such a schema, without the walk. A
record the shortcut cannot read goes through the deserializer again, so errors are unchanged.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_reader
from pydantic import ValidationError

from writeback.contract.events import (
    MODELS_BY_TOPIC,
    DeadLetter,
    Event,
    known_fields,
    schema_json,
    subject_for,
    validation_summary,
)
from writeback.errors import DecodeError, InvalidEvent, RegistryUnavailable

MAGIC_BYTE = 0


def registry_client(url: str, access: Mapping[str, str] | None = None) -> SchemaRegistryClient:
    """`access`: basic auth and TLS properties (`ServiceConfig.registry_config()`)."""
    return SchemaRegistryClient({"url": url, "timeout": 10, **(access or {})})


class EventSerde:
    """Serializes our models for their topics and decodes values back into models."""

    def __init__(self, client: SchemaRegistryClient, *, auto_register: bool = True) -> None:
        self.client = client
        self.auto_register = auto_register
        self._serializers: dict[str, AvroSerializer] = {}
        self._deserializer = AvroDeserializer(client)
        # (topic, schema id) -> fastavro-parsed writer schema, once the deserializer has read a
        # record of that pair and its schema is a plain record (see the module doc)
        self._writers: dict[tuple[str, int], Any] = {}
        self._whole: dict[tuple[str, int, type[Event]], bool] = {}

    def _serializer(self, schema_name: str) -> AvroSerializer:
        serializer = self._serializers.get(schema_name)
        if serializer is None:
            serializer = AvroSerializer(
                self.client,
                schema_json(schema_name),
                to_dict=lambda record, _ctx: record.to_avro(),
                conf={"auto.register.schemas": self.auto_register, "use.latest.version": not self.auto_register},
            )
            self._serializers[schema_name] = serializer
        return serializer

    def serialize(self, record: Event | DeadLetter, topic: str | None = None) -> bytes:
        topic = topic or record.topic
        context = SerializationContext(topic, MessageField.VALUE)
        try:
            data = self._serializer(record.schema_name)(record, context)
        except Exception as exc:
            if _is_connection_error(exc):
                raise RegistryUnavailable(
                    f"schema registry unreachable while registering {topic}-value: {type(exc).__name__}"
                ) from exc
            raise
        assert data is not None
        return data

    def decode_raw(self, topic: str, value: bytes | None) -> dict[str, Any]:
        """Avro-decode a framed value into plain data (no model validation)."""
        if value is None:
            raise DecodeError("value: empty (tombstone) record")
        if len(value) < 5 or value[0] != MAGIC_BYTE:
            raise DecodeError("value: not Confluent-framed Avro (magic byte 0 and schema id expected)")
        schema_id = int.from_bytes(value[1:5], "big")
        writer = self._writers.get((topic, schema_id)) if len(value) > 5 else None
        if writer is not None:
            try:
                fast: dict[str, Any] = schemaless_reader(io.BytesIO(value[5:]), writer, None)
                return fast
            except Exception:  # noqa: BLE001, S110 - the deserializer below reports it as it always has
                pass
        try:
            decoded = self._deserializer(value, SerializationContext(topic, MessageField.VALUE))
        except Exception as exc:
            if _is_connection_error(exc):
                raise RegistryUnavailable(
                    f"schema registry unreachable while decoding {topic}: {type(exc).__name__}"
                ) from exc
            raise DecodeError(f"value: cannot decode with schema id {schema_id}: {_reason(exc)}") from exc
        if not isinstance(decoded, dict):
            raise DecodeError("value: decoded to a non-record")
        if (topic, schema_id) not in self._writers:
            self._remember_writer(topic, schema_id)
        return decoded

    def _remember_writer(self, topic: str, schema_id: int) -> None:
        """Cache the writer schema for the shortcut if reading it needs nothing but fastavro."""
        try:
            schema = self.client.get_schema(schema_id, subject_for(topic))  # cached by the read above
            parsed = _plain_record(schema)
        except Exception:  # noqa: BLE001 - any doubt: keep using the deserializer for this pair
            parsed = None
        self._writers[(topic, schema_id)] = parsed

    def deserialize(self, topic: str, value: bytes | None, model: type[Event] | None = None) -> Event:
        """Decode a value from `topic` as `model` (by default, the model of the standard topic)."""
        model = model or MODELS_BY_TOPIC.get(topic)
        if model is None:
            raise DecodeError(f"topic: {topic!r} is not an event topic")
        data = self.decode_raw(topic, value)
        try:
            if self._knows_writer(topic, value, model):
                return model.model_validate(data)
            return model.from_avro(data)
        except ValidationError as exc:
            raise InvalidEvent(validation_summary(exc)) from None

    def decode_known(self, topic: str, value: bytes | None, model: type[Event]) -> dict[str, Any]:
        """Avro-decode a framed value as plain data holding only the fields `model` knows (a
        newer producer's added fields are dropped, as `from_avro` does), without validating it:
        ingest screens such data and stores it, and the model is built when the row is written."""
        data = self.decode_raw(topic, value)
        return data if self._knows_writer(topic, value, model) else known_fields(model, data)

    def _knows_writer(self, topic: str, value: bytes | None, model: type[Event]) -> bool:
        """Whether the record's writer schema has only fields `model` knows (so `from_avro`'s
        filtering of newer fields can be skipped); decided once per (topic, schema id)."""
        schema_id = int.from_bytes(value[1:5], "big") if value else -1
        key = (topic, schema_id, model)
        known = self._whole.get(key)
        if known is None:
            writer = self._writers.get((topic, schema_id))
            if writer is None:
                return False  # not read by the shortcut (yet): filter, as always
            known = self._whole[key] = model.knows_every_field_of(writer)
        return known

    def model_of(self, value: bytes | None) -> type[Event]:
        """The event model a framed value was written as, from its writer schema's name: topic
        names are configurable, so a record's topic alone does not say."""
        if value is None or len(value) < 5 or value[0] != MAGIC_BYTE:
            raise DecodeError("value: not Confluent-framed Avro (magic byte 0 and schema id expected)")
        schema_id = int.from_bytes(value[1:5], "big")
        try:
            name = json.loads(self.client.get_schema(schema_id).schema_str).get("name", "")
        except Exception as exc:
            if _is_connection_error(exc):
                raise RegistryUnavailable(f"schema registry unreachable reading schema {schema_id}") from exc
            raise DecodeError(f"value: schema id {schema_id}: {_reason(exc)}") from exc
        short = name.rsplit(".", 1)[-1]  # Apicurio may answer without the namespace
        for model in MODELS_BY_TOPIC.values():
            if model.schema_name.rsplit(".", 1)[-1] == short:
                return model
        raise DecodeError(f"value: schema {name!r} is not an event schema")

    def deserialize_dead_letter(self, topic: str, value: bytes | None) -> DeadLetter:
        data = self.decode_raw(topic, value)
        try:
            return DeadLetter.from_avro(data)
        except ValidationError as exc:
            raise DecodeError(validation_summary(exc)) from None


def _plain_record(schema: Schema) -> Any:
    """The fastavro-parsed schema if it is an Avro record with no references and no rules (which
    the deserializer would run), else None."""
    if schema.schema_type not in (None, "AVRO") or schema.references or schema.schema_str is None:
        return None
    rules = schema.rule_set
    if rules is not None and (rules.domain_rules or rules.migration_rules or rules.encoding_rules):
        return None
    parsed = parse_schema(json.loads(schema.schema_str))
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        return None
    return parsed


def _is_connection_error(exc: BaseException) -> bool:
    """The registry is unreachable or failing (5xx after the client's retries): not the record's fault."""
    import httpx

    while exc is not None:
        if isinstance(exc, httpx.TransportError | ConnectionError):
            return True
        if isinstance(exc, SchemaRegistryError) and (exc.http_status_code or 0) >= 500:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


# a value Python's own messages quote, e.g. "invalid literal for int() with base 16: '...'"
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')


def _reason(exc: BaseException) -> str:
    """A decode failure's reason without echoing record contents."""
    if isinstance(exc, SchemaRegistryError):
        what = "not found in the schema registry" if exc.http_status_code == 404 else "schema registry error"
        return f"{what} (HTTP {exc.http_status_code}: {str(exc.error_message)[:200]})"
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) and len(exc.args[0]) < 200 else ""
    detail = _QUOTED.sub("'…'", detail)
    return type(exc).__name__ + (f" ({detail})" if detail else "")
