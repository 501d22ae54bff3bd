"""The Quix Streams peer of `bench ingest`, run by the interpreter of its own virtual environment
(bench/.venvs/quix, quixstreams from the package index: it pins an older confluent-kafka than the
service), so nothing here imports `writeback`.

    <venv>/bin/python bench/_quix_peer.py CONFIG_JSON

CONFIG_JSON: {"bootstrap", "registry", "topics", "events", "batch", "variant", "sqlite", "group",
"accounts"}. Variants:
- raw: the control, in this environment: confluent-kafka `Consumer.consume` batches over assigned
  partitions + fastavro decoding with the registry's writer schema (what (a) does);
- noop: a Quix `Application` reading both topics with its `AvroDeserializer` (registry-backed),
  no processing;
- sink: the same, each event mapped to its account's tracking connection and written to SQLite
  (WAL, synchronous=NORMAL, as the ledger) by a `BatchingSink`, one transaction per flushed batch.

Quix commits on a checkpoint: `commit_every` = the batch size (2,000, as `ingest.run` commits after
each `consume()` batch of 2,000) and `commit_interval` 60 s so that only the count triggers it. The
clock starts at the first record Quix hands to the pipeline (its group join and start-up are not
timed, as (a)-(d) assign partitions instead of joining a group) and stops when `run(count=N)`
returns, after its final checkpoint. Prints one JSON line: {"seconds", "records", "rows"}.
"""

from __future__ import annotations

import io
import json
import sqlite3
import sys
import time


def raw(config: dict) -> dict:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from fastavro import parse_schema, schemaless_reader

    registry = SchemaRegistryClient({"url": config["registry"]})
    writers: dict[int, object] = {}
    consumer = Consumer({"bootstrap.servers": config["bootstrap"], "group.id": config["group"],
                         "enable.auto.commit": False, "fetch.queue.backoff.ms": 1})  # fmt: skip
    partitions = []
    for topic in config["topics"]:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions += [TopicPartition(topic, p, 0) for p in meta.partitions]
    consumer.assign(partitions)
    seen = 0
    start = time.perf_counter()
    while seen < config["events"]:
        for message in consumer.consume(min(config["batch"], config["events"] - seen), timeout=0.5):
            if message.error():
                continue
            value = message.value()
            schema_id = int.from_bytes(value[1:5], "big")
            writer = writers.get(schema_id)
            if writer is None:
                writer = writers[schema_id] = parse_schema(json.loads(registry.get_schema(schema_id).schema_str))
            schemaless_reader(io.BytesIO(value[5:]), writer, None)
            seen += 1
    seconds = time.perf_counter() - start
    consumer.close()
    return {"seconds": seconds, "records": seen, "rows": 0}


def quix(config: dict, *, sink: bool) -> dict:
    from quixstreams import Application
    from quixstreams.models.serializers.avro import AvroDeserializer
    from quixstreams.models.serializers.schema_registry import (
        SchemaRegistryClientConfig,
    )
    from quixstreams.sinks.base import BatchingSink

    db = sqlite3.connect(config["sqlite"], isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE rows (seq INTEGER PRIMARY KEY, event_id TEXT UNIQUE, connection_id TEXT, "
               "recipient_key TEXT, occurred_at TEXT, payload TEXT)")  # fmt: skip

    class SQLiteSink(BatchingSink):
        def write(self, batch) -> None:
            db.execute("BEGIN")
            db.executemany("INSERT INTO rows (event_id, connection_id, recipient_key, occurred_at, payload) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                           [item.value for item in batch])  # fmt: skip
            db.execute("COMMIT")

    connections = {a: f"{a}-tracking" for a in config["accounts"]}
    started: list[float] = []

    def row(event: dict) -> tuple:
        if not started:
            started.append(time.perf_counter())
        recipient = event.get("recipient") or {}
        return (
            str(event["event_id"]),
            connections[event["account_id"]],
            recipient.get("integration_id") or recipient.get("email"),
            event["occurred_at"].isoformat(),
            json.dumps(event, default=str),
        )

    def first(event: dict) -> dict:
        if not started:
            started.append(time.perf_counter())
        return event

    app = Application(
        broker_address=config["bootstrap"],
        consumer_group=config["group"],
        auto_offset_reset="earliest",
        commit_every=config["batch"],
        commit_interval=60.0,
        auto_create_topics=False,
        consumer_extra_config={"fetch.queue.backoff.ms": 1},
    )
    deserializer = AvroDeserializer(schema_registry_client_config=SchemaRegistryClientConfig(url=config["registry"]))
    for name in config["topics"]:
        frame = app.dataframe(app.topic(name, value_deserializer=deserializer))
        if sink:
            frame.apply(row).sink(SQLiteSink())
        else:
            frame.apply(first)
    app.run(count=config["events"], collect=False)
    seconds = time.perf_counter() - started[0]
    rows = db.execute("SELECT count(*) FROM rows").fetchone()[0]
    db.close()
    return {"seconds": seconds, "records": config["events"], "rows": rows}


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    variant = config["variant"]
    result = raw(config) if variant == "raw" else quix(config, sink=variant == "sink")
    print(json.dumps(result))
