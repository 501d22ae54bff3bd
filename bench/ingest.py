"""Ingest throughput: a Kafka backlog consumed into the ledger, as a ratio to consume + decode.

    python -m bench ingest [--events N] [--repeats R] [--batch-size B] [--partitions P] [--no-postgres]
                           [--stock] [--ledger] [--profile FILE]

Starts its own local stack (Kafka, schema registry, PostgreSQL), publishes a backlog of N events
once with `writeback.kafka.producer.Publisher`, then reads that same backlog to its end R times per
variant, each run with a fresh consumer group, in an order that rotates every repeat:

(a) baseline: confluent-kafka `Consumer.consume` batches + `EventSerde.decode_raw` (Avro only);
(b) (a) + the pydantic model: `EventSerde.deserialize`;
(c) `writeback.ingest.consume.run` into a SQLite ledger: decode, screen (the checks that protect
    the ledger and the CRMs; the model only for a route not yet remembered), fan out, insert one
    row per event in one transaction per batch, then commit the batch's offsets;
(d) the same into PostgreSQL;
(c, no database) (c) with `Ledger.insert` skipped (rows built, nothing stored): what ingest's own
    work costs, so the ceiling of (c) and (d) whatever the ledger does;
and, to explain (a): the consumer alone (no decoding) and, with --stock, confluent-kafka's stock
`AvroDeserializer` in place of `decode_raw` (left out by default to keep the run near 3 minutes).
Every run is verified (events seen, rows stored, offsets committed). Results go to
bench/results/ingest.md (or --output) and stdout; --profile FILE also runs (c) once under
cProfile and writes the stats there.

--ledger adds a second table, without Kafka: `Ledger.insert` alone on the same events' fan-out
(the ledger's share of (c) and (d)) next to a prototype that runs the same row insert through
the DBAPI cursor on pre-converted parameters (what SQLAlchemy's per-row work costs), on SQLite
and PostgreSQL. The prototype lives here, not in the ledger, and must store exactly the rows
and subscriber state the ledger stores.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import Measurement, command, log, machine, rotated, utc_now, write_result

_ID_NAMESPACE = uuid.UUID("3c1f7d0e-8b6a-4f2e-9d35-0a7c5e2b4f61")
ACCOUNTS = 50
# A run that has not reached the end of the backlog by then has failed (and says so).
RUN_LIMIT_S = 600.0


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    registry_url: str
    postgres_url: str | None


def tracking_settings() -> dict:
    """50 accounts, each with one `tracking` connection (daily schedule)."""
    return {
        "accounts": [
            {
                "id": account_id(i),
                "name": f"Bench account {i}",
                "time_zone": "UTC",
                "connections": [{"id": f"{account_id(i)}-tracking", "kind": "tracking", "crm": TRACKING_CRM}],
            }
            for i in range(ACCOUNTS)
        ]
    }


TRACKING_CRM = {"login_url": "https://bench.my.salesforce.com", "client_id": "bench", "client_secret": {"env": "BENCH_SF_SECRET"}}


def account_id(i: int) -> str:
    return f"acct-{i % ACCOUNTS:04d}"


def make_events(count: int) -> list:
    """`count` distinct events cycling through the activity and subscriber samples that a
    tracking connection takes (all but RESUBSCRIBE and BAD_EMAIL, for which 001 has no row), so
    every event makes exactly one ledger row. Each copy has its own event id and one of 50
    accounts."""
    from writeback_dev import samples

    from writeback.ingest.routing import route
    from writeback.settings import parse_settings

    tracking = parse_settings(tracking_settings()).accounts[0].connections[0]
    base = [
        e
        for e in samples.all_event_samples()
        if e.event_type in ("activity", "subscriber") and route(e, tracking).taken
    ]
    return [
        base[i % len(base)].model_copy(
            update={"event_id": str(uuid.uuid5(_ID_NAMESPACE, str(i))), "account_id": account_id(i)}
        )
        for i in range(count)
    ]


def topics() -> list[str]:
    from writeback.contract.events import ACTIVITY_TOPIC, SUBSCRIBER_TOPIC

    return [ACTIVITY_TOPIC, SUBSCRIBER_TOPIC]


def publish_backlog(stack: Stack, events: list, partitions: int) -> dict[tuple[str, int], int]:
    """Create the topics, publish `events`, return every partition's high watermark."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from writeback.contract.serde import EventSerde, registry_client
    from writeback.kafka.producer import Publisher

    admin = AdminClient({"bootstrap.servers": stack.bootstrap, "log_level": 0})
    for future in admin.create_topics(
        [NewTopic(t, partitions, 1) for t in topics()], operation_timeout=30
    ).values():
        future.result(30)
    publisher = Publisher(stack.bootstrap, EventSerde(registry_client(stack.registry_url)))
    for event in events:
        publisher.publish(event)
    publisher.flush()
    publisher.close()
    if publisher.delivered != len(events):
        raise RuntimeError(f"backlog: {publisher.delivered} of {len(events)} delivered")
    ends = watermarks(stack)
    if sum(ends.values()) != len(events):
        raise RuntimeError(f"backlog: {sum(ends.values())} records on the topics, expected {len(events)}")
    return ends


@contextmanager
def started_stack(*, with_postgres: bool) -> Iterator[Stack]:
    """The local stack every ingest benchmark runs against, started for the length of a run."""
    from writeback_dev.localstack import LocalStack

    log("starting Kafka, the schema registry" + (" and PostgreSQL" if with_postgres else "") + " ...")
    with LocalStack.create(with_postgres=with_postgres) as local:
        yield Stack(local.kafka.bootstrap, local.registry.url, local.postgres.url if local.postgres is not None else None)


def watermarks(stack: Stack) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": "bench-watermarks", "log_level": 0})
    try:
        ends = {}
        for topic in topics():
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                ends[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return ends
    finally:
        consumer.close()


def new_consumer(stack: Stack, ends: Iterable[tuple[str, int]], group_id: str | None = None):
    """The service's consumer settings, a fresh group (or `group_id`, for several consumers
    sharing one), the partitions in `ends` from the beginning.

    Partitions are assigned rather than subscribed: a group join (and its rebalance delay)
    would otherwise land inside the timed run. Commits still go to the group.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from writeback.config import ServiceConfig

    group_id = group_id or f"bench-ingest-{uuid.uuid4()}"
    config = ServiceConfig(bootstrap_servers=stack.bootstrap, group_id=group_id)
    consumer = Consumer({**config.consumer_config(), "log_level": 0})
    consumer.list_topics(timeout=10)  # connected before the clock starts
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
    return consumer


def check_read_to_end(what: str, last: dict[tuple[str, int], int], ends: dict[tuple[str, int], int], seen: int) -> None:
    expected = sum(ends.values())
    missing = {tp: end for tp, end in ends.items() if end and last.get(tp) != end - 1}
    if seen != expected or missing:
        raise RuntimeError(f"{what}: {seen} of {expected} events read; partitions short: {missing}")


Run = Callable[[], float]  # one timed run: does the work, verifies it, returns the seconds it took


def consume_run(stack: Stack, ends: dict[tuple[str, int], int], batch_size: int, decode: str) -> Run:
    """(a), (b) and the consume-only and stock-deserializer rows: consume every record of the
    backlog in batches and (unless `decode` is "none") decode each value; nothing is stored."""
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from writeback.contract.serde import EventSerde, registry_client

    consumer = new_consumer(stack, ends)
    client = registry_client(stack.registry_url)  # fresh: schema lookups happen inside the run
    serde = EventSerde(client)
    stock = AvroDeserializer(client)
    contexts = {t: SerializationContext(t, MessageField.VALUE) for t in topics()}
    expected = sum(ends.values())

    def run() -> float:
        seen, last = 0, {}
        deadline = _deadline()
        consume = consumer.consume
        start = time.perf_counter()
        try:
            while seen < expected:
                _check(deadline, "consume")
                for message in consume(batch_size, timeout=0.5):
                    if message.error() is not None:
                        raise RuntimeError(f"consume error: {message.error().str()}")
                    topic, value = message.topic(), message.value()
                    if decode == "raw":
                        serde.decode_raw(topic, value)
                    elif decode == "model":
                        serde.deserialize(topic, value)
                    elif decode == "stock":
                        stock(value, contexts[topic])
                    last[(topic, message.partition())] = message.offset()
                    seen += 1
            seconds = time.perf_counter() - start
        finally:
            consumer.close()
        check_read_to_end(f"consume ({decode})", last, ends, seen)
        return seconds

    return run


def _deadline() -> float:
    return time.monotonic() + RUN_LIMIT_S


def _check(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise RuntimeError(f"{what}: backlog not read within {RUN_LIMIT_S:.0f} s")


def sqlite_url(workdir: Path) -> str:
    path = workdir / f"ledger-{uuid.uuid4().hex[:8]}.db"
    return f"sqlite:///{path}"


def postgres_url(stack: Stack) -> str:
    """A fresh database on the stack's server for each run."""
    import psycopg
    from sqlalchemy.engine import make_url

    assert stack.postgres_url is not None
    server = make_url(stack.postgres_url)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    dsn = f"host={server.host} port={server.port} user={server.username} dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.set(database=name).render_as_string(hide_password=False)


class _Counting:
    """Ingest.handle, then stop the loop once the backlog's last batch is handled; `run`
    still commits that batch before it looks at `stop` again."""

    def __init__(self, ingest, stop: threading.Event, expected: int) -> None:
        self.ingest = ingest
        self.stop = stop
        self.expected = expected
        self.consumed = self.rows = self.added = self.rejected = self.dropped = 0

    def handle(self, records):
        report = self.ingest.handle(records)
        self.consumed += report.consumed
        self.rows += report.rows
        self.added += report.added
        self.rejected += report.rejected
        self.dropped += report.dropped
        if self.consumed >= self.expected:
            self.stop.set()
        return report


def service_ingest(stack: Stack, ledger):
    """`Ingest` wired as the service wires it (stored settings, a dead-letter sink on its own
    publisher), so the benchmarks time what runs in production. Returns (ingest, publisher);
    the caller closes the publisher."""
    from writeback.config import ServiceConfig
    from writeback.contract.serde import EventSerde, registry_client
    from writeback.ingest import consume as ingesting
    from writeback.kafka.dead_letters import DeadLetterSink
    from writeback.kafka.producer import Publisher
    from writeback.settings import StoredSettings

    serde = EventSerde(registry_client(stack.registry_url))
    publisher = Publisher(stack.bootstrap, serde)
    ingest = ingesting.Ingest(
        ledger, serde, ServiceConfig().topic_models(), StoredSettings(ledger), DeadLetterSink(publisher)
    )
    return ingest, publisher


def ledger_events(ledger) -> tuple[int, int]:
    """(rows, distinct event ids) in the ledger: both must equal the backlog's size, since every
    event makes exactly one row (a lost event or a doubled row shows here)."""
    import sqlalchemy as sa

    from writeback.ledger.tables import writebacks

    with ledger.engine.connect() as conn:
        rows, ids = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(writebacks.c.event_id)))
        ).one()
    return rows, ids


class _Unstored:
    """(c, no database): the ledger for everything but storing rows, which it skips and
    reports as added, so ingest's own work is all that is timed."""

    def __init__(self, ledger) -> None:
        self._ledger = ledger

    def __getattr__(self, name: str):
        return getattr(self._ledger, name)

    def insert(self, rows, changes=(), *, now):
        from writeback.ledger.store import Inserted

        return Inserted(len(rows))


def ingest_run(stack: Stack, ends: dict[tuple[str, int], int], batch_size: int, url: str, *, store: bool = True) -> Run:
    """(c) and (d): the service's ingest loop, `writeback.ingest.consume.run`, with the
    service's own wiring (stored settings, dead-letter sink), into a fresh ledger. Without
    `store`, the ledger's insert is skipped: (c, no database)."""
    from writeback.ingest import consume as ingesting
    from writeback.ledger import Ledger
    from writeback.settings import apply, parse_settings

    ledger = Ledger.connect(url)
    apply(ledger, parse_settings(tracking_settings()), datetime.now(UTC))
    ingest, publisher = service_ingest(stack, ledger)
    if not store:
        ingest.ledger = _Unstored(ledger)
    consumer = new_consumer(stack, ends)
    stop = threading.Event()
    counting = _Counting(ingest, stop, sum(ends.values()))
    expected = sum(ends.values())

    def run() -> float:
        watchdog = threading.Timer(RUN_LIMIT_S, stop.set)
        watchdog.start()
        gc.freeze()  # as `serve` does once its wiring is built; undone below for the other variants
        try:
            start = time.perf_counter()
            ingesting.run(consumer, counting, stop, batch_size=batch_size)  # type: ignore[arg-type]
            seconds = time.perf_counter() - start
            committed = {
                (tp.topic, tp.partition): tp.offset
                for tp in consumer.committed(
                    [_tp(t, p) for t, p in ends], timeout=10
                )
            }
        finally:
            gc.unfreeze()
            watchdog.cancel()
            consumer.close()
            publisher.close()
        rows, ids = ledger_events(ledger)
        ledger.close()
        short = {tp: (committed.get(tp), end) for tp, end in ends.items() if end and committed.get(tp) != end}
        problems = []
        if counting.consumed != expected or counting.rejected or counting.dropped:
            problems.append(
                f"{counting.consumed} of {expected} consumed, {counting.rejected} rejected, {counting.dropped} dropped"
            )
        if counting.rows != expected or counting.added != expected:
            problems.append(f"{counting.rows} rows made, {counting.added} added, expected {expected}")
        if store and (rows != expected or ids != expected):
            problems.append(f"ledger holds {rows} rows for {ids} events, expected {expected}")
        if short:
            problems.append(f"offsets not committed to the end (committed, end): {short}")
        if problems:
            raise RuntimeError(f"ingest into {ledger.dialect}: " + "; ".join(problems))
        return seconds

    return run


def _tp(topic: str, partition: int):
    from confluent_kafka import TopicPartition

    return TopicPartition(topic, partition)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events in the backlog")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant; the median is reported")
    parser.add_argument("--batch-size", type=int, default=2000, help="records per consume() batch [2000, the service default]")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of each event topic")
    parser.add_argument("--no-postgres", action="store_true", help="skip (d) and do not start PostgreSQL")
    parser.add_argument("--stock", action="store_true", help="also time confluent-kafka's AvroDeserializer in place of decode_raw")
    parser.add_argument("--profile", type=Path, default=None, help="also run (c) once under cProfile; stats to this file")
    parser.add_argument("--quix", action="store_true", help="also run the Quix Streams peer (bench/_quix_peer.py) in bench/.venvs/quix")
    parser.add_argument("--ledger", action="store_true", help="also time Ledger.insert alone, and the same rows through the driver")
    parser.add_argument("--output", type=Path, default=None, help="results file [bench/results/ingest.md]")
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--events, --repeats and --batch-size must be positive")
    return args


LABELS = {
    "a": "(a) baseline: consume batches + `EventSerde.decode_raw` (Avro only)",
    "b": "(b) decode + validate: consume + `EventSerde.deserialize` (pydantic model)",
    "c": "(c) `ingest.run` into SQLite: decode, screen, fan out, insert, commit",
    "d": "(d) `ingest.run` into PostgreSQL: the same",
    "c-nodb": "(c, no database) `ingest.run` as (c) with `Ledger.insert` skipped: ingest's own work, the ceiling of (c) and (d)",
    "consume": "(a, consume only) `Consumer.consume` batches, no decoding",
    "stock": "(a, stock deserializer) consume + confluent-kafka `AvroDeserializer`",
    "q-raw": "(q) control: (a)'s loop in the Quix environment (its confluent-kafka, fastavro), a subprocess",
    "q-noop": "(q) Quix Streams `Application`, registry `AvroDeserializer`, no processing",
    "q-sink": "(q) Quix Streams: each event mapped to its connection, rows to SQLite by a `BatchingSink`",
}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    log(f"bench ingest: {args.events:,} events, {args.repeats} repeats, batches of {args.batch_size:,}")
    events = make_events(args.events)
    workdir = Path(tempfile.mkdtemp(prefix="writeback-bench-"))
    try:
        with started_stack(with_postgres=not args.no_postgres) as stack:
            results, mean_size = measure(stack, events, args, workdir)
            ledger_results = (
                measure_ledger(stack, events, args, workdir) if args.ledger else {}
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    markdown = report(args, argv, results, mean_size, ledger_results)
    path = write_result("ingest", markdown, args.output)
    print(markdown)
    log(f"written to {path}")
    ratios = {
        results[k].label.split(":")[0].split(" `")[0]: results[k].rate / results["a"].rate
        for k in ("a", "b", "c", "d", "c-nodb")
        if k in results
    }
    log(f"chart: {chart(ratios, path.with_suffix('.png'))}")
    return 0


def chart(ratios: dict[str, float], path: Path) -> Path:
    """The ratios to (a) as bars, with the issue's targets as lines (0.5 SQLite, 0.35 PostgreSQL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    names = list(ratios)
    axes.barh(names, [ratios[n] for n in names], color="#4a78a8")
    for name in names:
        axes.text(ratios[name] + 0.01, name, f"{ratios[name]:.2f}", va="center")
    axes.axvline(0.5, color="#b33", linestyle="--", label="target into SQLite (0.5)")
    axes.axvline(0.35, color="#d92", linestyle=":", label="target into PostgreSQL (0.35)")
    axes.set_xlabel("events/s as a ratio to (a), same run, medians")
    axes.set_xlim(0, 1.15)
    axes.invert_yaxis()
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def measure(stack: Stack, events: list, args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Measurement], float]:
    from writeback.contract.serde import EventSerde, registry_client

    log(f"publishing the backlog: {len(events):,} events ...")
    ends = publish_backlog(stack, events, args.partitions)
    serde = EventSerde(registry_client(stack.registry_url))
    mean_size = sum(len(serde.serialize(e)) for e in events[:1000]) / min(len(events), 1000)

    n = len(events)
    factories: dict[str, Callable[[], Run]] = {
        "a": lambda: consume_run(stack, ends, args.batch_size, "raw"),
        "b": lambda: consume_run(stack, ends, args.batch_size, "model"),
        "c": lambda: ingest_run(stack, ends, args.batch_size, sqlite_url(workdir)),
        "c-nodb": lambda: ingest_run(stack, ends, args.batch_size, sqlite_url(workdir), store=False),
        "consume": lambda: consume_run(stack, ends, args.batch_size, "none"),
    }
    if args.stock:
        factories["stock"] = lambda: consume_run(stack, ends, args.batch_size, "stock")
    if stack.postgres_url is not None:
        factories["d"] = lambda: ingest_run(stack, ends, args.batch_size, postgres_url(stack))
    if args.quix:
        python = quix_python()
        for key in ("q-raw", "q-noop", "q-sink"):
            factories[key] = lambda key=key: quix_run(python, stack, ends, args.batch_size, key[2:], workdir)
    results = {key: Measurement(LABELS[key], n) for key in factories}

    # Warm-up, not timed: the broker's first fetches, the registry's first lookups, imports.
    consume_run(stack, ends, args.batch_size, "raw")()
    for repeat in range(args.repeats):
        for key in rotated(list(factories), repeat):
            # set-up (ledger, settings, consumer connect) and the checks afterwards are not timed
            seconds = factories[key]()()
            results[key].seconds.append(seconds)
            log(f"  repeat {repeat + 1}/{args.repeats} {key:>7}: {n / seconds:>10,.0f} events/s ({seconds:.2f} s)")

    if args.profile is not None:
        run = factories["c"]()
        profiler = cProfile.Profile()
        profiler.runcall(run)
        profiler.dump_stats(args.profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        log(text.getvalue())
        log(f"profile of (c) written to {args.profile}")
    return results, mean_size


# --- the Quix Streams peer, in its own virtual environment ----------------------------------

QUIX_VENV = Path(__file__).resolve().parent / ".venvs" / "quix"
QUIX_REQUIREMENT = "quixstreams==3.28.1"  # pins confluent-kafka 2.12, older than the service's


def quix_python() -> Path:
    """The peer's interpreter; the environment is made on first use (pip, from the package index)."""
    import subprocess

    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {QUIX_VENV} with {QUIX_REQUIREMENT} ...")
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", QUIX_REQUIREMENT], check=True)
    return python


def quix_run(python: Path, stack: Stack, ends: dict[tuple[str, int], int], batch_size: int, variant: str, workdir: Path) -> Run:
    """One run of bench/_quix_peer.py (see its doc) in a subprocess, on a fresh group and SQLite file."""
    import json
    import subprocess

    expected = sum(ends.values())
    config = {
        "bootstrap": stack.bootstrap, "registry": stack.registry_url, "topics": sorted({t for t, _ in ends}),
        "events": expected, "batch": batch_size, "variant": variant, "group": f"bench-quix-{uuid.uuid4().hex[:8]}",
        "sqlite": str(workdir / f"quix-{uuid.uuid4().hex[:8]}.db"), "accounts": sorted({account_id(i) for i in range(ACCOUNTS)}),
    }  # fmt: skip

    def run() -> float:
        peer = Path(__file__).with_name("_quix_peer.py")
        done = subprocess.run([str(python), str(peer), json.dumps(config)], capture_output=True, text=True, timeout=RUN_LIMIT_S)
        if done.returncode != 0:
            raise RuntimeError(f"quix {variant}: exit {done.returncode}: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result["records"] != expected or (variant == "sink" and result["rows"] != expected):
            raise RuntimeError(f"quix {variant}: {result}, expected {expected} records and rows")
        return float(result["seconds"])

    return run


# --- Ledger.insert alone, and the same rows through the driver ------------------------------

LEDGER_LABELS = {
    "ledger": "`Ledger.insert` as it is",
    "driver": "its INSERT alone: the same rows as ready tuples, DBAPI `executemany` + commit (PostgreSQL: what COPY replaced)",
    "bare": "a bare table (uuid text key + JSON payload, nothing else), ready tuples",
}


def _prepared_insert(ledger, variant: str, batches: list, now: datetime) -> Callable[[int], int]:
    """The database's own share of `Ledger.insert`, with the Python work done before the clock
    starts: every batch's parameters are built here, then `insert(i)` only runs batch i's
    executemany and commit. "driver" uses the ledger's own statement and table (so it must
    store exactly what the ledger stores); "bare" a table with nothing but a deduplicating key
    and the payload: the ceiling for any ledger that keeps one row per event."""
    from writeback.ledger.store import (
        _aware,
        _insert_rows_sql,
        _row_params,
        _sqlite_stamp,
    )

    stamp = _sqlite_stamp if ledger.dialect == "sqlite" else _aware
    if variant == "bare":
        mark = "?" if ledger.engine.dialect.paramstyle == "qmark" else "%s"
        with ledger.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE bare (id VARCHAR(36) PRIMARY KEY, payload TEXT NOT NULL)")
        sql = f"INSERT INTO bare (id, payload) VALUES ({mark}, {mark}) ON CONFLICT (id) DO NOTHING"
        params = [[(r.id, r.payload) for r in b.rows] for b in batches]
    else:
        sql = _insert_rows_sql(ledger.engine.dialect.paramstyle)
        params = [_row_params(b.rows, now, stamp) for b in batches]
    raw = ledger.engine.raw_connection()

    def insert(i: int) -> int:
        cursor = raw.cursor()
        cursor.executemany(sql, params[i])
        added = cursor.rowcount
        cursor.close()
        raw.commit()
        return added

    insert.close = raw.close  # type: ignore[attr-defined]
    return insert


def measure_ledger(stack: Stack, events: list, args: argparse.Namespace, workdir: Path) -> dict[str, Measurement]:
    """`Ledger.insert` of the fan-out of every batch, nothing else (the ledger's share of (c) and
    (d)), beside the database's own share of it and the ceiling of a bare table. Each run on a
    fresh database; "driver" must store exactly the rows the ledger stores."""
    from writeback.ingest.consume import Consumed, fan_out
    from writeback.ingest.incoming import from_event
    from writeback.ingest.routing import Routes
    from writeback.ingest.windows import Windows
    from writeback.ledger import Ledger
    from writeback.settings import apply, parse_settings

    log("ledger: Ledger.insert alone on the fan-out of the same events ...")
    settings = parse_settings(tracking_settings())
    accounts = {a.id: a for a in settings.accounts}
    now = datetime.now(UTC)
    windows = Windows()
    batches = []
    for start in range(0, len(events), args.batch_size):
        chunk = events[start : start + args.batch_size]
        records = [from_event(Consumed(e.topic, 0, start + i, None, None), e) for i, e in enumerate(chunk)]
        batches.append(fan_out(records, accounts, {}, windows, now, Routes()))
    n = len(events)
    backends = {"sqlite": lambda: sqlite_url(workdir)}
    if stack.postgres_url is not None:
        backends["postgresql"] = lambda: postgres_url(stack)
    results: dict[str, Measurement] = {}
    stored: dict[str, list] = {}
    for repeat in range(args.repeats):
        for backend, new_url in backends.items():
            for variant in rotated(list(LEDGER_LABELS), repeat):
                key = f"{backend}:{variant}"
                ledger = Ledger.connect(new_url())
                apply(ledger, settings, now)
                if variant == "ledger":
                    def insert(i: int, ledger=ledger) -> int:
                        return ledger.insert(batches[i].rows, batches[i].changes, now=now).added
                else:
                    insert = _prepared_insert(ledger, variant, batches, now)
                started = time.perf_counter()
                added = sum(insert(i) for i in range(len(batches)))
                seconds = time.perf_counter() - started
                if variant != "ledger":
                    insert.close()  # type: ignore[attr-defined]
                table = "bare" if variant == "bare" else "writebacks"
                with ledger.engine.connect() as conn:
                    rows = [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id").all()]
                ledger.close()
                if added != n or len(rows) != n:
                    raise RuntimeError(f"ledger {key}: {added} added, {len(rows)} rows (expected {n})")
                if variant != "bare":
                    rows = [r[1:] for r in rows]  # all but `seq`, which numbers arrival, not content
                if variant != "bare" and rows != stored.setdefault(backend, rows):
                    raise RuntimeError(f"ledger {key}: stored rows differ from the other variant's")
                results.setdefault(key, Measurement(f"{backend}: {LEDGER_LABELS[variant]}", n)).seconds.append(seconds)
                log(f"  repeat {repeat + 1}/{args.repeats} {key:>18}: {n / seconds:>10,.0f} rows/s ({seconds:.2f} s)")
    return results


def report(
    args: argparse.Namespace,
    argv: list[str],
    results: dict[str, Measurement],
    mean_size: float,
    ledger_results: dict[str, Measurement] | None = None,
) -> str:
    base = results["a"].rate
    rows = []
    for key in ("a", "b", "c", "d", "c-nodb", "consume", "stock", "q-raw", "q-noop", "q-sink"):
        m = results.get(key)
        if m is None:
            continue
        rows.append(
            f"| {m.label} | {m.events:,} | {m.median:.2f} | {m.rate:,.0f} | {m.spread()} | {m.rate / base:.3f} |"
        )
    quix = []
    if "q-sink" in results:
        control = results["q-raw"].rate
        sink, noop = results["q-sink"].rate / control, results["q-noop"].rate / control
        ours = {k: results[k].rate / base for k in ("c", "d") if k in results}
        quix = [
            "",
            f"Quix Streams against its own control (q): no-op pipeline {noop:.3f}, rows into SQLite {sink:.3f}. "
            "Ours against (a): " + ", ".join(f"({k}) {v:.3f} = {v / sink:.2f} x Quix's" for k, v in ours.items()) + ".",
            "Quix commits a checkpoint every 2,000 records (`commit_every`; `commit_interval` 60 s so the count",
            "decides), as `ingest.run` commits each 2,000-record batch; its clock starts at the first record it",
            "hands the pipeline, so its group join is not timed (ours assign partitions).",
        ]
    return "\n".join(
        [
            "# Ingest throughput",
            "",
            f"- Date: {utc_now()}",
            f"- Machine: {machine()}",
            (
                f"- N = {args.events:,} events in the backlog, read to the end by every run with a fresh consumer "
                f"group; R = {args.repeats} repeats (median reported, variants in rotating order); "
                f"`consume()` batches of {args.batch_size:,}; {args.partitions} partitions per topic"
            ),
            (
                f"- Events: the activity and subscriber samples a tracking connection takes, in turn (mean framed "
                f"value {mean_size:.0f} B), over {ACCOUNTS} accounts with one `tracking` connection each, so every "
                "event makes one ledger row"
            ),
            (
                "- Stack: the local single-node Kafka (KRaft), Apicurio registry and PostgreSQL on loopback, started "
                "by the benchmark. SQLite: a file in a temp dir with the ledger's pragmas (WAL, synchronous=NORMAL). "
                "PostgreSQL runs with fsync=off (the local stack's setting), so (d) is an upper bound for a real server"
            ),
            f"- Reproduce: `{command('ingest', argv)}`",
            "",
            "| variant | events | median s | events/s | range of runs (events/s) | ratio to (a) |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            *quix,
            "",
            "Every run is checked: (a) and (b) read every record up to each partition's high watermark; (c) and",
            "(d) must report every event consumed and none rejected or dropped, hold exactly one row per event in",
            "the ledger, and have the fresh group's committed offsets at every partition's high watermark; (c, no",
            "database) the same, except that it stores nothing.",
            "",
            *ledger_table(ledger_results or {}),
        ]
    )


def ledger_table(results: dict[str, Measurement]) -> list[str]:
    if not results:
        return []
    lines = [
        "## Ledger.insert alone (`--ledger`)",
        "",
        "The fan-out of the same events, inserted batch by batch (one transaction each), with no Kafka,",
        "decoding or fan-out in the timing: `Ledger.insert`; the database's own share of it (the same",
        "statement on tuples built before the clock starts, only `executemany` and the commit timed; it must",
        "store exactly what `Ledger.insert` stores); and a bare table holding only a deduplicating id and",
        "the payload: the ceiling here for any ledger that keeps one row per event. Ratio to `Ledger.insert`",
        "on the same backend.",
        "",
        "| ledger insert | rows | median s | rows/s | range of runs (rows/s) | ratio to `Ledger.insert` |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, m in results.items():
        base = results[key.split(":")[0] + ":ledger"].rate
        lines.append(f"| {m.label} | {m.events:,} | {m.median:.2f} | {m.rate:,.0f} | {m.spread()} | {m.rate / base:.2f} |")
    return [*lines, ""]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
