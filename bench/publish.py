"""Publish throughput through a real broker and registry, as a ratio to raw librdkafka.

    python -m bench publish [--events N] [--cli-events M] [--repeats R] [--partitions P]

Starts its own local stack (Kafka + schema registry), then times, R times each, in an order that
rotates every repeat:

(a) baseline: a confluent-kafka Producer with the Publisher's settings (idempotent, acks=all, lz4,
    same linger) producing the very bytes and keys (b) produces, serialized beforehand;
(b) `Publisher.publish` of N ActivityEvent/SubscriberEvent models: model -> to_avro -> registry
    Avro serializer (Confluent framing) -> produce, then flush;
(c) `writeback publish FILE` as a subprocess on an NDJSON file of M events: interpreter start,
    JSON parsing and validation, publishing, flush;
and, to explain (b) and (c): (b)'s serialization alone (no Kafka), the CLI with --dry-run (parse
and validate only) and on a one-event file (its fixed start-up cost).
Results go to bench/results/publish.md (or --output) and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from bench import (
    Measurement,
    command,
    log,
    machine,
    rotated,
    timed,
    utc_now,
    write_result,
)

_ID_NAMESPACE = uuid.UUID("7b0e3a52-1c8f-4d7e-9a51-4f3c2b1a0d9e")


def make_events(count: int) -> list:
    """`count` distinct events, cycling through every activity and subscriber sample.

    Each copy gets its own event id and one of 50 accounts, so keys spread over partitions the
    way many recipients do; the samples cover every subcode and action, so sizes are realistic.
    """
    from writeback_dev import samples

    base = [e for e in samples.all_event_samples() if e.event_type in ("activity", "subscriber")]
    events = []
    for i in range(count):
        sample = base[i % len(base)]
        events.append(
            sample.model_copy(
                update={
                    "event_id": str(uuid.uuid5(_ID_NAMESPACE, str(i))),
                    "account_id": f"acct-{i % 50:04d}",
                }
            )
        )
    return events


def producer_config(bootstrap: str) -> dict:
    """The Publisher's own producer settings (see writeback/producers/publisher.py)."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "compression.type": "lz4",
        "log_level": 0,
    }


def baseline_run(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> Callable[[], None]:
    """(a): produce pre-serialized (topic, key, value) triples; bytes only."""
    from confluent_kafka import Producer

    errors: list = []

    def on_delivery(error, _message) -> None:
        if error is not None:
            errors.append(error)

    producer = Producer({**producer_config(bootstrap), "on_delivery": on_delivery})
    producer.list_topics(timeout=10)

    def run() -> None:
        produce, poll = producer.produce, producer.poll
        for topic, key, value in records:
            while True:
                try:
                    produce(topic, value, key=key)
                    break
                except BufferError:
                    poll(0.1)
            poll(0)
        remaining = producer.flush(60)
        if remaining or errors:
            raise RuntimeError(f"baseline: {remaining} unflushed, {len(errors)} failed: {errors[:3]}")

    return run


def publisher_run(bootstrap: str, registry_url: str, events: list) -> Callable[[], None]:
    """(b): the typed Publisher, with a fresh serde (registry lookups happen inside the run)."""
    from writeback.contract.serde import EventSerde, registry_client
    from writeback.kafka.producer import Publisher

    publisher = Publisher(bootstrap, EventSerde(registry_client(registry_url)))

    def run() -> None:
        publish = publisher.publish
        for event in events:
            publish(event)
        publisher.flush()
        publisher.close()
        if publisher.delivered != len(events):
            raise RuntimeError(f"publisher: {publisher.delivered} of {len(events)} delivered")

    return run


def serialize_run(registry_url: str, events: list) -> Callable[[], None]:
    """(b) without Kafka: only model -> to_avro -> registry Avro serializer, to split (b)'s cost."""
    from writeback.contract.serde import EventSerde, registry_client

    serde = EventSerde(registry_client(registry_url))

    def run() -> None:
        serialize = serde.serialize
        for event in events:
            serialize(event)

    return run


def writeback_cli() -> list[str]:
    found = shutil.which("writeback")
    return [found] if found else [sys.executable, "-m", "writeback.cli"]


def cli_run(env: dict[str, str], path: Path, expected: int, *extra: str) -> Callable[[], None]:
    """(c): `writeback publish FILE` end to end, as a platform team runs it."""
    argv = [*writeback_cli(), "publish", str(path), *extra]
    verb = "valid" if "--dry-run" in extra else "published"

    def run() -> None:
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or f"{expected} {verb}, 0 rejected" not in result.stdout:
            raise RuntimeError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr[-2000:]}"
            )

    return run


def topic_records(stack, topics: list[str]) -> int:
    """Messages on the topics now (sum of high watermarks), to check nothing went missing."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": stack.kafka.bootstrap, "group.id": "bench-count", "log_level": 0}
    )
    try:
        total = 0
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high
        return total
    finally:
        consumer.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench publish", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events for (a) and (b)")
    parser.add_argument("--cli-events", type=int, default=20_000, help="events in the file for (c)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant; the median is reported")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of each event topic")
    parser.add_argument("--output", type=Path, default=None, help="results file [bench/results/publish.md]")
    args = parser.parse_args(argv)
    if args.events < 1 or args.cli_events < 1 or args.repeats < 1:
        parser.error("--events, --cli-events and --repeats must be positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from confluent_kafka.admin import AdminClient, NewTopic
    from writeback_dev.localstack import LocalStack

    from writeback.contract.events import ACTIVITY_TOPIC, SUBSCRIBER_TOPIC
    from writeback.contract.serde import EventSerde, registry_client

    log(f"bench publish: {args.events:,} events (a, b), {args.cli_events:,} (c), {args.repeats} repeats")
    events = make_events(args.events)
    cli_events = make_events(args.cli_events)
    workdir = Path(tempfile.mkdtemp(prefix="writeback-bench-"))
    try:
        log("starting Kafka and the schema registry ...")
        with LocalStack.create() as stack:
            topics = [ACTIVITY_TOPIC, SUBSCRIBER_TOPIC]
            admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap, "log_level": 0})
            for future in admin.create_topics(
                [NewTopic(t, args.partitions, 1) for t in topics], operation_timeout=30
            ).values():
                future.result(30)

            # The exact bytes (b) will produce, so (a) differs only in what (b) does per event.
            serde = EventSerde(registry_client(stack.registry.url))
            records = [(e.topic, e.key().encode(), serde.serialize(e)) for e in events]
            mean_size = sum(len(v) for _, _, v in records) / len(records)

            ndjson = workdir / "events.ndjson"
            ndjson.write_text("".join(json.dumps(e.to_json()) + "\n" for e in cli_events))
            one = workdir / "one.ndjson"
            one.write_text(json.dumps(cli_events[0].to_json()) + "\n")
            env = {
                **os.environ,
                "WRITEBACK_BOOTSTRAP_SERVERS": stack.kafka.bootstrap,
                "WRITEBACK_SCHEMA_REGISTRY_URL": stack.registry.url,
            }

            results = {
                "a": Measurement("(a) baseline: raw Producer, pre-serialized bytes", args.events),
                "b": Measurement("(b) Publisher.publish of models (to_avro + registry framing)", args.events),
                "ser": Measurement("(b, serialize only) `EventSerde.serialize`, no Kafka", args.events),
                "c": Measurement("(c) `writeback publish FILE` end to end (subprocess)", args.cli_events),
                "dry": Measurement("(c, --dry-run) CLI parse + validate only, no Kafka", args.cli_events),
                "one": Measurement("(c, 1 event) CLI fixed cost: start-up, connect, 1 event", 1),
            }
            factories = {
                "a": lambda: baseline_run(stack.kafka.bootstrap, records),
                "b": lambda: publisher_run(stack.kafka.bootstrap, stack.registry.url, events),
                "ser": lambda: serialize_run(stack.registry.url, events),
                "c": lambda: cli_run(env, ndjson, args.cli_events),
                "dry": lambda: cli_run(env, ndjson, args.cli_events, "--dry-run"),
                "one": lambda: cli_run(env, one, 1),
            }
            # Warm-up, not timed: the broker's first idempotent producer and first lz4 batches
            # are slower (coordinator load, JIT), which would otherwise land on repeat 1.
            baseline_run(stack.kafka.bootstrap, records[:2000])()
            before = topic_records(stack, topics)
            for repeat in range(args.repeats):
                for key in rotated(list(factories), repeat):
                    run = factories[key]()  # set-up (producer connect) is not timed
                    seconds = timed(run)
                    results[key].seconds.append(seconds)
                    log(f"  repeat {repeat + 1}/{args.repeats} {key:>3}: {results[key].events / seconds:>10,.0f} events/s ({seconds:.2f} s)")
            produced = topic_records(stack, topics) - before
            expected = args.repeats * (2 * args.events + args.cli_events + 1)
            if produced != expected:
                raise RuntimeError(f"{produced} records on the topics, expected {expected}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    markdown = report(args, argv, results, mean_size)
    path = write_result("publish", markdown, args.output)
    print(markdown)
    log(f"written to {path}")
    return 0


def report(args: argparse.Namespace, argv: list[str], results: dict[str, Measurement], mean_size: float) -> str:
    base = results["a"].rate
    rows = []
    for key in ("a", "b", "ser", "c", "dry"):
        m = results[key]
        rows.append(
            f"| {m.label} | {m.events:,} | {m.median:.2f} | {m.rate:,.0f} | {m.spread()} | {m.rate / base:.3f} |"
        )
    one = results["one"]
    rows.append(f"| {one.label} | 1 | {one.median:.2f} | – | – | – |")
    return "\n".join(
        [
            "# Publish throughput",
            "",
            f"- Date: {utc_now()}",
            f"- Machine: {machine()}",
            f"- N = {args.events:,} events for (a) and (b), {args.cli_events:,} for (c); R = {args.repeats} repeats "
            f"(median reported, variants in rotating order); {args.partitions} partitions per topic",
            f"- Events: every activity and subscriber sample in turn (mean framed value {mean_size:.0f} B), "
            "to `writeback.activity-events` and `writeback.subscriber-events`",
            "- Stack: the local single-node Kafka (KRaft) and Apicurio registry on loopback, started by the benchmark",
            f"- Reproduce: `{command('publish', argv)}`",
            "",
            "| variant | events | median s | events/s | range of runs (events/s) | ratio to (a) |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "Every run is checked: the producers flush with no failed delivery, the CLI reports every event",
            "published, and the topics' high watermarks grow by exactly the number of events sent.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
