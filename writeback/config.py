"""Process configuration: where Kafka, the registry and the ledger are.

Per-connection Writeback Settings (which writebacks, which schedules) are a different concern
and live in `writeback.settings`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from writeback.contract.events import (
    ACTIVITY_TOPIC,
    COMMUNITY_TOPIC,
    DLQ_TOPIC_PREFIX,
    SUBSCRIBER_TOPIC,
    ActivityEvent,
    CommunityListEvent,
    Event,
    SubscriberEvent,
)
from writeback.errors import ConfigError
from writeback.flush.breaker import BreakerPolicy
from writeback.flush.retries import RetryPolicy
from writeback.transport import KafkaSecurity, RegistryAccess


class ServiceConfig(BaseSettings):
    """Read from WRITEBACK_* environment variables (e.g. WRITEBACK_BOOTSTRAP_SERVERS)."""

    model_config = SettingsConfigDict(
        env_prefix="WRITEBACK_", env_nested_delimiter="__", extra="ignore"
    )

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka brokers, host:port, comma separated")
    schema_registry_url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v7",
        description="Confluent-compatible schema registry API; no user info in it (see WRITEBACK_REGISTRY__*)",
    )
    database_url: str = Field(
        "sqlite:///writeback.db",
        description="The ledger, a SQLAlchemy URL: postgresql+psycopg://user:password@host/db when several instances share it",
    )
    group_id: str = Field("writeback", description="Consumer group; every instance of one deployment uses the same")
    instance_id: str | None = Field(
        None,
        description="This instance's stable name in the consumer group (static membership): a "
        "restarted instance gets its partitions back at once instead of after the session timeout. "
        "Unique per instance, kept across restarts (e.g. the StatefulSet pod name).",
    )
    subscriber_topic: str = Field(SUBSCRIBER_TOPIC, description="Subscriber events topic")
    activity_topic: str = Field(ACTIVITY_TOPIC, description="Recipient activity events topic")
    community_topic: str = Field(COMMUNITY_TOPIC, description="Community list events topic")
    dead_letter_prefix: str = Field(
        DLQ_TOPIC_PREFIX, description="Dead-letter topics: this prefix plus the CRM kind, or plus `ingest` for unreadable records"
    )
    settings_file: str | None = Field(None, description="Writeback Settings (TOML/YAML) applied at start")
    http_host: str = Field("0.0.0.0", description="Address of the /metrics, /healthz and /readyz server")
    metrics_port: int | None = Field(9464, description="/metrics, /healthz, /readyz; 0 picks a free port, None turns it off")
    ingest_batch_size: int = Field(2000, ge=1, description="Records consumed, stored and committed together")
    flush_interval_s: float = Field(1.0, gt=0, description="Seconds between flush passes over due windows")
    flush_concurrency: int = Field(
        4, ge=1, description="Connections flushed at once; each connection's rows stay in one thread, in order"
    )
    lease_ttl_s: float = Field(60.0, gt=0, description="A dead instance's connections wait this long")
    gauges_interval_s: float = Field(
        5.0, ge=0, description="How often serve re-reads the backlog gauges (grouped counts over the ledger)"
    )
    settings_ttl_s: float = Field(5.0, ge=0, description="How often stored settings are re-read")
    community_interval_s: float = Field(
        60.0, gt=0, description="How often serve looks for campaign groups due their hourly community sync"
    )
    pushgateway_url: str | None = Field(None, description="`writeback replay` pushes its metrics here when set (job writeback_replay)")
    retry: RetryPolicy = RetryPolicy()  # e.g. WRITEBACK_RETRY__BASE_DELAY=PT0.5S (ISO 8601)
    breaker: BreakerPolicy = BreakerPolicy()
    kafka: KafkaSecurity = KafkaSecurity()  # e.g. WRITEBACK_KAFKA__SASL_PASSWORD__FILE=/run/secrets/kafka
    registry: RegistryAccess = RegistryAccess()  # e.g. WRITEBACK_REGISTRY__PASSWORD__ENV=REGISTRY_PASSWORD
    shutdown_timeout_s: float = Field(
        20.0,
        gt=0,
        description="After SIGTERM, how long the in-flight flush batch may take before it is abandoned "
        "(its rows return to pending when the lease expires and are written again, idempotently); keep it below the orchestrator's "
        "grace period (Kubernetes: terminationGracePeriodSeconds, 30 by default) minus about 5 s",
    )
    access_retry_s: float = Field(
        30.0,
        gt=0,
        description="While the broker or the registry refuses our credentials or certificates, how often "
        "to try again (the instance stays up and not ready, so a rotated secret heals it)",
    )

    @field_validator("schema_registry_url")
    @classmethod
    def _no_user_info(cls, url: str) -> str:
        if urlsplit(url).password is not None or "@" in urlsplit(url).netloc:
            raise ValueError("a URL with user info is refused: set WRITEBACK_REGISTRY__USERNAME and __PASSWORD__ENV/__FILE")
        return url

    def topic_models(self) -> dict[str, type[Event]]:
        return {
            self.subscriber_topic: SubscriberEvent,
            self.activity_topic: ActivityEvent,
            self.community_topic: CommunityListEvent,
        }

    @property
    def topics(self) -> list[str]:
        return list(self.topic_models())

    def kafka_config(self, bootstrap_servers: str | None = None) -> dict[str, object]:
        """What every Kafka client we create starts from: where the brokers are and how to
        authenticate (secrets resolved now)."""
        return {"bootstrap.servers": bootstrap_servers or self.bootstrap_servers} | self.kafka.client_config()

    def registry_config(self) -> dict[str, str]:
        return self.registry.client_config()

    def consumer_config(self) -> dict[str, object]:
        return self.kafka_config() | {
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # librdkafka's 1000 ms default throttles a fast consumer ~4.7x (local-stack notes).
            "fetch.queue.backoff.ms": 1,
            "partition.assignment.strategy": "cooperative-sticky",
        } | ({"group.instance.id": self.instance_id} if self.instance_id else {})


def load_config() -> ServiceConfig:
    """The process configuration, or a ConfigError naming each bad variable and why; values are
    never echoed (a misplaced password must not reach the log)."""
    try:
        return ServiceConfig()
    except ValidationError as exc:
        problems = [
            f"WRITEBACK_{'__'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
