"""The local stack is real: a framed Avro record crosses the broker and the registry."""

from __future__ import annotations

import json

import httpx
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

SMOKE_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Smoke",
        "namespace": "com.writeback.test",
        "doc": "A record that proves the stack works end to end.",
        "fields": [
            {"name": "id", "type": "string", "doc": "Identifies the record."},
            {"name": "n", "type": "long", "doc": "A number that must survive the trip."},
        ],
    }
)


def test_avro_record_round_trips_through_real_broker_and_registry(kafka, schema_registry, topic):
    registry = SchemaRegistryClient({"url": schema_registry.url})
    serializer = AvroSerializer(registry, SMOKE_SCHEMA)
    context = SerializationContext(topic, MessageField.VALUE)
    sent = {"id": "smoke-1", "n": 2**40 + 7}
    payload = serializer(sent, context)

    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    delivered = []
    producer.produce(topic, payload, key=b"acct:1", on_delivery=lambda e, m: delivered.append(e))
    assert producer.flush(30) == 0
    assert delivered == [None]

    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": f"smoke-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
    finally:
        consumer.close()

    raw = message.value()
    assert raw[0] == 0, "Confluent framing starts with magic byte 0"
    schema_id = int.from_bytes(raw[1:5], "big")
    served = httpx.get(f"{schema_registry.url}/schemas/ids/{schema_id}").json()
    assert json.loads(served["schema"])["name"] == "Smoke"
    versions = httpx.get(f"{schema_registry.url}/subjects/{topic}-value/versions").json()
    assert versions == [1]

    decoded = AvroDeserializer(registry)(raw, context)
    assert decoded == sent
    assert message.key() == b"acct:1"


def test_postgres_is_real(postgres_url):
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 41 + 1")).scalar() == 42
        assert "PostgreSQL" in conn.execute(sa.text("SELECT version()")).scalar()
    engine.dispose()
