"""`writeback serve`, `publish` and `replay` against a broker that only lets them in over
SASL_SSL, as users' clusters do: a CA and certificates made for the run, SCRAM-SHA-512 users
created by Kafka's StorageTool and PLAIN users in the listener's JAAS configuration.

The test setup itself (topics, reading dead letters) uses the broker's PLAINTEXT listener; the
processes under test are given only the SASL_SSL address."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from writeback_dev.localstack import KafkaBroker, SaslSslListener
from writeback_dev.localstack.registry_gateway import RegistryGateway
from writeback_dev.localstack.tls import ServerFiles, make_server_files
from writeback_dev.samples import ndjson

from tests.builders import subscriber, wait_for
from tests.test_service import (
    Instances,
    by_status,
    markers,
    release_all_windows,
    settings_toml,
)
from writeback.access import kafka_refusal
from writeback.config import ServiceConfig
from writeback.ledger import Ledger

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

SCRAM_USER, SCRAM_PASSWORD = "writeback", "scram-" + uuid.uuid4().hex
PLAIN_USER, PLAIN_PASSWORD = "publisher", "plain-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def secure_kafka(stack_dir: Path) -> Iterator[tuple[KafkaBroker, ServerFiles]]:
    tls = make_server_files(stack_dir / "sasl-tls")
    broker = KafkaBroker(
        stack_dir / "sasl-kafka",
        heap="384m",
        sasl_ssl=SaslSslListener(
            tls.keystore,
            tls.keystore_password,
            scram_users={SCRAM_USER: SCRAM_PASSWORD},
            plain_users={PLAIN_USER: PLAIN_PASSWORD},
        ),
    ).start()
    yield broker, tls
    broker.stop()


def kafka_env(broker: KafkaBroker, ca: Path, password_file: Path, mechanism: str = "SCRAM-SHA-512", user: str = SCRAM_USER) -> dict[str, str]:
    return {
        "WRITEBACK_BOOTSTRAP_SERVERS": broker.sasl_ssl_bootstrap,
        "WRITEBACK_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "WRITEBACK_KAFKA__SASL_MECHANISM": mechanism,
        "WRITEBACK_KAFKA__SASL_USERNAME": user,
        "WRITEBACK_KAFKA__SASL_PASSWORD__FILE": str(password_file),
        "WRITEBACK_KAFKA__SSL_CA_FILE": str(ca),
    }


@pytest.fixture
def secure_service(secure_kafka, schema_registry, sim, tmp_path) -> Iterator[tuple[Instances, dict[str, str], Path]]:
    broker, tls = secure_kafka
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    suffix = uuid.uuid4().hex[:6]
    topics = {"sub": f"sasl-sub.{suffix}", "act": f"sasl-act.{suffix}", "com": f"sasl-com.{suffix}"}
    for future in admin.create_topics([NewTopic(t, 3, 1) for t in topics.values()], operation_timeout=30).values():
        future.result(30)
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_toml(sim, {"acme": ["acme-sf"]}))
    password_file = tmp_path / "kafka-password"
    password_file.write_text(SCRAM_PASSWORD + "\n")
    env = {
        **os.environ,
        **kafka_env(broker, tls.ca, password_file),
        "WRITEBACK_SCHEMA_REGISTRY_URL": schema_registry.url,
        "WRITEBACK_SUBSCRIBER_TOPIC": topics["sub"],
        "WRITEBACK_ACTIVITY_TOPIC": topics["act"],
        "WRITEBACK_COMMUNITY_TOPIC": topics["com"],
        "WRITEBACK_DEAD_LETTER_PREFIX": f"sasl.{suffix}.dlq.",
        "WRITEBACK_GROUP_ID": f"sasl-{suffix}",
        "WRITEBACK_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "WRITEBACK_SETTINGS_FILE": str(settings),
        "WRITEBACK_METRICS_PORT": "0",
        "WRITEBACK_HTTP_HOST": "127.0.0.1",
        "WRITEBACK_FLUSH_INTERVAL_S": "0.2",
        "WRITEBACK_SETTINGS_TTL_S": "1",
        "WRITEBACK_ACCESS_RETRY_S": "1",
        "TEST_SF_SECRET": sim.client_secret,
    }
    instances = Instances(env, tmp_path)
    yield instances, topics, password_file
    instances.stop_all()


def writeback(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "writeback.cli", *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def probe_url(instances: Instances) -> str:
    wait_for(lambda: "metrics and probes on" in instances.output(), 60, "the HTTP endpoint")
    return instances.output().split("metrics and probes on ")[1].split()[0]


def dead_letters(broker: KafkaBroker, topic: str, expected: int) -> list:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    found: list = []
    try:
        wait_for(lambda: found.extend(m for m in consumer.consume(10, 0.5) if not m.error()) or len(found) >= expected, 60, f"dead letters on {topic}")
    finally:
        consumer.close()
    return found


def test_with_the_right_credentials_serve_consumes_produces_and_writes_back_over_sasl_ssl(secure_kafka, secure_service, sim, tmp_path):
    broker, tls = secure_kafka
    ca = tls.ca
    instances, topics, _ = secure_service
    contact = sim.add_contact("Pat", "pat@example.org")
    event = subscriber(email="pat@example.org", recipient={"email": "pat@example.org", "integration_id": contact})
    events_file = tmp_path / "events.ndjson"
    events_file.write_text(ndjson([event]))

    # publish over SASL_SSL with the other mechanism, PLAIN, and its own user
    plain_password = tmp_path / "plain-password"
    plain_password.write_text(PLAIN_PASSWORD)
    published = writeback(["publish", str(events_file), "--topic", topics["sub"]], instances.env | kafka_env(broker, ca, plain_password, "PLAIN", PLAIN_USER))
    assert published.returncode == 0, published.stderr
    assert "1 published" in published.stdout
    # a record nobody can read: serve must set it aside on its dead-letter topic (a produce)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topics["sub"], b"not avro", key=b"k")
    producer.flush(10)

    instances.start()
    url = probe_url(instances)
    ledger = Ledger.connect(instances.env["WRITEBACK_DATABASE_URL"])
    wait_for(lambda: sum(ledger.counts().values()) == 1, 60, lambda: "serve to consume over SASL_SSL: " + instances.output()[-2000:])
    release_all_windows(ledger, ["acme-sf"])
    wait_for(lambda: by_status(ledger).get("completed", 0) == 1, 60, lambda: "the writeback: " + instances.output()[-2000:])
    assert len(markers(sim, contact)) == 1
    assert sim.record(contact)["HasOptedOutOfEmail"] is True
    letters = dead_letters(broker, instances.env["WRITEBACK_DEAD_LETTER_PREFIX"] + "ingest", 1)
    assert len(letters) == 1
    assert httpx.get(f"{url}/readyz").status_code == 200

    # replay reads the dead-letter topic over SASL_SSL too
    replayed = writeback(["replay", "--kind", "ingest", "--dry-run"], instances.env)
    assert replayed.returncode == 0, replayed.stderr
    assert "ingest" in replayed.stdout

    output = instances.output()
    for secret in (SCRAM_PASSWORD, PLAIN_PASSWORD, sim.client_secret):
        assert secret not in output + published.stdout + published.stderr + replayed.stdout + replayed.stderr
    ledger.close()


def test_with_a_wrong_password_serve_stays_up_not_ready_says_why_and_recovers_when_the_secret_is_fixed(
    secure_service, sim
):
    instances, topics, password_file = secure_service
    wrong = "wrong-" + uuid.uuid4().hex
    password_file.write_text(wrong)
    proc = instances.start()
    url = probe_url(instances)
    wait_for(lambda: "SASL authentication error" in instances.output(), 60, lambda: "the refusal in the log: " + instances.output()[-2000:])
    readyz = httpx.get(f"{url}/readyz")
    assert readyz.status_code == 503
    assert "SASL authentication error" in readyz.text and "SCRAM-SHA-512" in readyz.text
    assert httpx.get(f"{url}/healthz").status_code == 200  # alive: no restart by a liveness probe
    assert proc.poll() is None, "serve exited instead of waiting"
    assert instances.output().count("not ready: Kafka") == 1, "the same refusal is logged once, not in a loop"
    assert "Traceback" not in instances.output()

    password_file.write_text(SCRAM_PASSWORD)  # the Secret is fixed (a mounted file is updated in place)
    wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, 60, lambda: "readiness after the fix: " + instances.output()[-2000:])
    assert "access to Kafka and the schema registry restored" in instances.output()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    for text in (instances.output(), readyz.text):
        assert wrong not in text and SCRAM_PASSWORD not in text


def test_publish_with_a_wrong_password_fails_with_the_reason_and_no_secret(secure_kafka, secure_service, tmp_path):
    broker, _ = secure_kafka
    instances, _, password_file = secure_service
    wrong = "wrong-" + uuid.uuid4().hex
    password_file.write_text(wrong)
    events_file = tmp_path / "events.ndjson"
    events_file.write_text(ndjson([subscriber()]))
    result = writeback(["publish", str(events_file)], instances.env)
    assert result.returncode != 0
    assert "SASL authentication error" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_broker_certificate_from_another_authority_is_refused_with_the_tls_reason(secure_kafka, tmp_path):
    broker, _ = secure_kafka
    other_ca = make_server_files(tmp_path / "other", ca_name="someone else's CA").ca
    password = tmp_path / "password"
    password.write_text(SCRAM_PASSWORD)
    env = kafka_env(broker, other_ca, password)
    config = ServiceConfig.model_validate(
        {
            "bootstrap_servers": env["WRITEBACK_BOOTSTRAP_SERVERS"],
            "kafka": {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": SCRAM_USER,
                "sasl_password": {"file": str(password)},
                "ssl_ca_file": str(other_ca),
            },
        }
    )
    reason = kafka_refusal(config, timeout=5)
    assert reason is not None and "certificate verify failed" in reason
    assert SCRAM_PASSWORD not in reason
    # the right CA is let in
    right = config.model_copy(update={"kafka": config.kafka.model_copy(update={"ssl_ca_file": secure_kafka[1].ca})})
    assert kafka_refusal(right) is None


def guide_steps() -> tuple[dict[str, str], list[str]]:
    """The exports and commands of docs/operations.md's "existing cluster" shell block, as written."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    section = text.split("## Against an existing cluster", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    exports, commands = {}, []
    for line in block.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line.startswith("export "):
            name, value = line.removeprefix("export ").split("=", 1)
            exports[name] = shlex.split(value)[0]
        elif line and not line.startswith("#"):
            commands.append(line)
    return exports, commands


def test_the_operations_guide_runs_as_written_against_sasl_ssl_an_https_registry_with_basic_auth_and_postgres(
    secure_kafka, schema_registry, sim, postgres_database, tmp_path
):
    """The newcomer's path: the guide's variables (only addresses and file paths replaced by this
    stack's) and its commands, run by bash as written; then events flow to the CRM."""
    broker, tls = secure_kafka
    exports, commands = guide_steps()
    registry_password = "registry-" + uuid.uuid4().hex
    kafka_password = tmp_path / "kafka-password"
    kafka_password.write_text(SCRAM_PASSWORD)
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_toml(sim, {"acme": ["acme-sf"]}))
    here = {  # where this stack is: the guide's example hosts and paths, replaced
        "WRITEBACK_BOOTSTRAP_SERVERS": broker.sasl_ssl_bootstrap,
        "WRITEBACK_KAFKA__SASL_PASSWORD__FILE": str(kafka_password),
        "WRITEBACK_KAFKA__SSL_CA_FILE": str(tls.ca),
        "WRITEBACK_REGISTRY__SSL_CA_FILE": str(tls.ca),
        "WRITEBACK_DATABASE_URL": postgres_database,
        "WRITEBACK_SETTINGS_FILE": str(settings),
    }
    assert exports["WRITEBACK_KAFKA__SASL_USERNAME"] == SCRAM_USER
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    defaults = ServiceConfig.model_construct()
    wanted = [defaults.subscriber_topic, defaults.activity_topic, defaults.community_topic]
    for future in admin.create_topics([NewTopic(t, 3, 1) for t in wanted], operation_timeout=30).values():
        try:
            future.result(30)
        except Exception:  # noqa: BLE001 - already there from an earlier run of this test
            pass

    with RegistryGateway(schema_registry.url, exports["WRITEBACK_REGISTRY__USERNAME"], registry_password, tls.cert, tls.key) as gateway:
        here["WRITEBACK_SCHEMA_REGISTRY_URL"] = gateway.url
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WRITEBACK_")},
            **exports,
            **here,
            exports["WRITEBACK_REGISTRY__PASSWORD__ENV"]: registry_password,
            "WRITEBACK_METRICS_PORT": "0",  # not the guide's 9464: tests share this machine
            "WRITEBACK_HTTP_HOST": "127.0.0.1",
            "WRITEBACK_FLUSH_INTERVAL_S": "0.2",
            "WRITEBACK_SETTINGS_TTL_S": "1",
            "TEST_SF_SECRET": sim.client_secret,
        }
        shell = f'writeback() {{ "{sys.executable}" -m writeback.cli "$@"; }}; '
        instances = Instances(env, tmp_path)
        try:
            for command in commands:
                if command == "writeback serve":
                    instances.start()
                    continue
                ran = subprocess.run(["bash", "-c", shell + command], env=env, capture_output=True, text=True, timeout=180, check=False)
                assert ran.returncode == 0, f"{command}: {ran.stdout}{ran.stderr}"
            assert commands[-1] == "writeback serve"
            url = probe_url(instances)
            wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, 60, lambda: "ready: " + instances.output()[-2000:])

            contact = sim.add_contact("Pat", "guide@example.org")
            events_file = tmp_path / "events.ndjson"
            events_file.write_text(ndjson([subscriber(email="guide@example.org", recipient={"email": "guide@example.org", "integration_id": contact})]))
            published = subprocess.run(["bash", "-c", shell + f"writeback publish {events_file}"], env=env, capture_output=True, text=True, timeout=120, check=False)
            assert published.returncode == 0, published.stderr
            ledger = Ledger.connect(postgres_database)
            wait_for(lambda: sum(ledger.counts().values()) == 1, 60, lambda: "ingest: " + instances.output()[-2000:])
            release_all_windows(ledger, ["acme-sf"])
            wait_for(lambda: len(markers(sim, contact)) == 1, 60, lambda: "the writeback: " + instances.output()[-2000:])
            ledger.close()
            assert gateway.refused == 0

            # the registry's password wrong: not ready, and why
            instances.stop_all()
            instances.env = env | {exports["WRITEBACK_REGISTRY__PASSWORD__ENV"]: "wrong"}
            instances.start()
            wait_for(lambda: "HTTP 401" in instances.output(), 60, lambda: "the registry's refusal: " + instances.output()[-2000:])
            assert gateway.refused > 0
            assert registry_password not in instances.output() and SCRAM_PASSWORD not in instances.output()
        finally:
            instances.stop_all()
