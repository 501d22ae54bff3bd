"""A real single-node Apache Kafka (KRaft broker+controller) from Maven Central jars.

Docker is not available on every developer machine or in CI, so the broker runs on the JDK
directly; the pinned version lives in deploy/local/kafka/pom.xml.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from confluent_kafka.admin import AdminClient

from writeback_dev.localstack import processes
from writeback_dev.localstack.paths import deploy_dir, maven_argv

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka.server.KafkaServer
logger.kafka.level = INFO
"""


def lib_dir() -> Path:
    return deploy_dir() / "kafka" / "target" / "lib"


def ensure_jars() -> Path:
    """Fetch the broker jars once; later runs reuse target/lib (and ~/.m2)."""
    lib = lib_dir()
    if not any(lib.glob("kafka_2.13-*.jar")):
        processes.require_tool("mvn", "install Maven (apt-get install maven) and a JDK 17+")
        processes.run_checked(
            maven_argv("dependency:copy-dependencies"),
            "fetching Kafka jars with Maven",
            cwd=deploy_dir() / "kafka",
            timeout=900,
        )
    return lib


def _cluster_id() -> str:
    """Kafka's own format for `StorageTool random-uuid`, without paying a JVM start for it.

    Like Kafka's `Uuid.randomUuid`, never one starting with "-": the command line would read it
    as an option (1 start in 64 failed before this).
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


@dataclass(frozen=True)
class SaslSslListener:
    """A second listener as users' clusters have it: TLS with a key store the caller made (see
    `localstack.tls`), SCRAM-SHA-512 users (created at format time by Kafka's own StorageTool,
    `--add-scram`) and PLAIN users (in the listener's JAAS configuration)."""

    keystore: Path
    keystore_password: str
    scram_users: dict[str, str] = field(default_factory=dict)
    plain_users: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=processes.free_port)


@dataclass
class KafkaBroker:
    workdir: Path
    port: int = field(default_factory=processes.free_port)
    controller_port: int = field(default_factory=processes.free_port)
    heap: str = "512m"
    sasl_ssl: SaslSslListener | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """The SASL_SSL listener, by the name its certificate carries."""
        assert self.sasl_ssl is not None, "no SASL_SSL listener configured"
        return f"localhost:{self.sasl_ssl.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kafka.log"

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
        }
        if self.sasl_ssl is not None:
            props.update(self._sasl_ssl_props(self.sasl_ssl))
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.workdir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_path))
        return path

    def _sasl_ssl_props(self, listener: SaslSslListener) -> dict[str, str]:
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in listener.plain_users.items())
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port},"
            f"SASL_SSL://localhost:{listener.port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},SASL_SSL://localhost:{listener.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(listener.keystore),
            "ssl.keystore.password": listener.keystore_password,
            "ssl.key.password": listener.keystore_password,
        }

    def _scram_args(self) -> list[str]:
        users = self.sasl_ssl.scram_users if self.sasl_ssl is not None else {}
        return [arg for name, pw in users.items() for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={pw}]")]

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{ensure_jars()}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        self.launch()
        processes.start_reliably(self, timeout)
        return self

    def new_ports(self) -> None:
        self.port = processes.free_port()
        self.controller_port = processes.free_port()
        if self.sasl_ssl is not None:
            self.sasl_ssl = replace(self.sasl_ssl, port=processes.free_port())

    def launch(self) -> None:
        processes.require_tool("java", "install a JDK 17+ (apt-get install openjdk-17-jre-headless)")
        shutil.rmtree(self.workdir / "data", ignore_errors=True)  # a retry formats afresh
        config = self._write_config()
        processes.run_checked(
            self._java("kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config), *self._scram_args()),
            "formatting Kafka KRaft storage",
            timeout=120,
        )
        self.proc = processes.spawn(self._java("kafka.Kafka", str(config)), self.log_path)

    def wait_ready(self, timeout: float = 90.0) -> None:
        processes.wait_until(
            self._answers_metadata,
            what=f"Kafka broker on {self.bootstrap}",
            timeout=timeout,
            proc=self.proc,
            log_path=self.log_path,
        )

    def _answers_metadata(self) -> bool:
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 0}
        )
        metadata = admin.list_topics(timeout=2)
        return bool(metadata.brokers)

    def stop(self) -> None:
        processes.stop(self.proc)
        self.proc = None
