"""Our subjects in the Schema Registry: `<topic>-value`, BACKWARD compatible, one per schema."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from writeback.adapters.registry import KINDS
from writeback.contract.events import (
    ACTIVITY_TOPIC,
    COMMUNITY_TOPIC,
    DLQ_INGEST_TOPIC,
    SUBSCRIBER_TOPIC,
    dead_letter_topic,
    schema_json,
    subject_for,
)

COMPATIBILITY = "BACKWARD"

SUBJECT_SCHEMAS: dict[str, str] = {
    subject_for(SUBSCRIBER_TOPIC): "SubscriberEvent",
    subject_for(ACTIVITY_TOPIC): "ActivityEvent",
    subject_for(COMMUNITY_TOPIC): "CommunityListEvent",
    subject_for(DLQ_INGEST_TOPIC): "DeadLetter",
    **{subject_for(dead_letter_topic(kind)): "DeadLetter" for kind in KINDS},
}


@dataclass(frozen=True)
class SubjectResult:
    subject: str
    schema: str
    ok: bool
    detail: str


def _avro(name: str) -> Schema:
    return Schema(schema_json(name), "AVRO")


def register_all(client: SchemaRegistryClient) -> list[SubjectResult]:
    """Set BACKWARD on each subject before registering, so the rule guards the first change."""
    results = []
    for subject, name in SUBJECT_SCHEMAS.items():
        try:
            client.set_compatibility(subject_name=subject, level=COMPATIBILITY)
            schema_id = client.register_schema(subject, _avro(name))
            results.append(SubjectResult(subject, name, True, f"schema id {schema_id}"))
        except SchemaRegistryError as exc:
            results.append(SubjectResult(subject, name, False, _registry_reason(exc)))
    return results


def check_all(client: SchemaRegistryClient) -> list[SubjectResult]:
    """Would the registry accept our local schemas? New subjects always would."""
    results = []
    for subject, name in SUBJECT_SCHEMAS.items():
        try:
            client.get_latest_version(subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                results.append(SubjectResult(subject, name, True, "new subject"))
                continue
            results.append(SubjectResult(subject, name, False, _registry_reason(exc)))
            continue
        try:
            compatible = client.test_compatibility(subject, _avro(name))
        except SchemaRegistryError as exc:
            results.append(SubjectResult(subject, name, False, _registry_reason(exc)))
            continue
        results.append(
            SubjectResult(subject, name, compatible, "compatible" if compatible else f"not {COMPATIBILITY} compatible with the registered version")
        )
    return results


def _registry_reason(exc: SchemaRegistryError) -> str:
    return f"HTTP {exc.http_status_code}: {exc.error_message}"
