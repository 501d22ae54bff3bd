"""`writeback serve`: the long-running consumer process.

Until the ledger lands this consumes, decodes and logs (ids and types only, never PII) and
commits after each batch is handled, which is the shape the ingest consumer keeps.
"""

from __future__ import annotations

import logging
import signal
import threading

from confluent_kafka import Consumer, KafkaError
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from writeback.config import ServiceConfig

log = logging.getLogger("writeback.service")


def install_stop_handlers(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


def serve(config: ServiceConfig, stop: threading.Event) -> None:
    consumer = Consumer(config.consumer_config())
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": config.schema_registry_url}))
    consumer.subscribe(config.topics)
    log.info("consuming %s from %s", ",".join(config.topics), config.bootstrap_servers)
    try:
        while not stop.is_set():
            messages = consumer.consume(500, timeout=0.5)
            for message in messages:
                if message.error():
                    if message.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("consume error: %s", message.error())
                    continue
                context = SerializationContext(message.topic(), MessageField.VALUE)
                try:
                    event = deserialize(message.value(), context)
                except Exception as exc:  # noqa: BLE001 - one bad record never stops the loop
                    log.warning(
                        "undecodable record %s[%d]@%d: %s",
                        message.topic(), message.partition(), message.offset(), type(exc).__name__,
                    )  # fmt: skip
                    continue
                log.info("event %s on %s", event.get("event_id"), message.topic())
            if messages:
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
