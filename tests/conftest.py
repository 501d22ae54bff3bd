"""Session fixtures for the real components: one broker, one registry, one PostgreSQL per run.

Each starts lazily, only when a test asks for it, and a component that cannot start fails the
tests that need it (never skips them): CI must have every component.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from writeback_dev.localstack import KafkaBroker, PostgresServer, SchemaRegistry
from writeback_dev.simulators.salesforce import SalesforceSim

from tests.builders import Topics
from writeback.contract.events import Event
from writeback.contract.serde import EventSerde, registry_client
from writeback.kafka.producer import Publisher
from writeback.ledger import Ledger


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="writeback-test-stack-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka(stack_dir: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(stack_dir / "kafka").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def schema_registry(stack_dir: Path) -> Iterator[SchemaRegistry]:
    registry = SchemaRegistry(stack_dir / "registry").start()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def postgres_url(stack_dir: Path) -> Iterator[str]:
    if url := os.environ.get("WRITEBACK_PG_URL"):
        yield url
        return
    server = PostgresServer(stack_dir / "postgres").start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def topic_factory(kafka: KafkaBroker):
    """Creates uniquely named topics so tests sharing the broker never see each other's data."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})

    def create(base: str = "t", partitions: int = 3) -> str:
        base = base.replace("[", "-").replace("]", "").replace("_", "-")[:80]
        name = f"{base}.{uuid.uuid4().hex[:8]}"
        futures = admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)
        futures[name].result(30)
        return name

    return create


@pytest.fixture
def topic(topic_factory, request: pytest.FixtureRequest) -> str:
    return topic_factory(request.node.name)


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database per test, on each backend the ledger supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SalesforceSim]:
    """One Salesforce simulator per session (a real HTTP server on loopback)."""
    with SalesforceSim(client_id="test-client-id", client_secret="test-client-secret-do-not-log") as sim:
        yield sim


@pytest.fixture
def sim(sim_server: SalesforceSim) -> SalesforceSim:
    """The simulator, emptied of records, requests and faults."""
    sim_server.reset()
    return sim_server


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """A migrated ledger on each backend."""
    ledger = Ledger.connect(database_url)
    yield ledger
    ledger.close()


@pytest.fixture(scope="session")
def consume_all(kafka: KafkaBroker):
    """Reads every record currently on a topic (from the beginning, until it goes quiet)."""
    from confluent_kafka import Consumer

    def consume(topic: str, expected: int | None = None, timeout: float = 30.0) -> list:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka.bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        records, idle = [], 0.0
        import time

        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    idle += 0.5
                    if (expected is None and records and idle >= 2) or (
                        expected is not None and len(records) >= expected
                    ):
                        break
                    continue
                if message.error():
                    continue
                idle = 0.0
                records.append(message)
        finally:
            consumer.close()
        return records

    return consume


# -- topics, serde and publisher for one test ---------------------------------------------------


@pytest.fixture
def topics(topic_factory, request: pytest.FixtureRequest) -> Topics:
    base = request.node.name[:40]
    return Topics(
        topic_factory(f"{base}-sub"),
        topic_factory(f"{base}-act"),
        f"{base}.{uuid.uuid4().hex[:6]}.dlq.".replace("[", "-").replace("]", ""),
    )


@pytest.fixture
def serde(schema_registry) -> EventSerde:
    return EventSerde(registry_client(schema_registry.url))


@pytest.fixture
def publisher(kafka, serde) -> Iterator[Publisher]:
    with Publisher(kafka.bootstrap, serde) as publisher:
        yield publisher


@pytest.fixture
def publish(publisher: Publisher, topics: Topics) -> Callable[[Sequence[Event]], None]:
    def send(events: Sequence[Event]) -> None:
        for event in events:
            publisher.publish(event, topic=topics.of(event))
        publisher.flush()

    return send
