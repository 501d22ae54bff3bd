"""Process configuration: where Kafka, the registry and the ledger are.

Per-connection Writeback Settings (which writebacks, which schedules) are a different concern
and live in `writeback.settings`.
"""

from __future__ import annotations

from pydantic import Field
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
from writeback.flush.breaker import BreakerPolicy
from writeback.flush.retries import RetryPolicy


class ServiceConfig(BaseSettings):
    """Read from WRITEBACK_* environment variables (e.g. WRITEBACK_BOOTSTRAP_SERVERS)."""

    model_config = SettingsConfigDict(
        env_prefix="WRITEBACK_", env_nested_delimiter="__", extra="ignore"
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    schema_registry_url: str = "http://127.0.0.1:8081/apis/ccompat/v7"
    database_url: str = "sqlite:///writeback.db"
    group_id: str = "writeback"
    instance_id: str | None = Field(
        None,
        description="This instance's stable name in the consumer group (static membership): a "
        "restarted instance gets its partitions back at once instead of after the session timeout. "
        "Unique per instance, kept across restarts (e.g. the StatefulSet pod name).",
    )
    subscriber_topic: str = SUBSCRIBER_TOPIC
    activity_topic: str = ACTIVITY_TOPIC
    community_topic: str = COMMUNITY_TOPIC
    dead_letter_prefix: str = DLQ_TOPIC_PREFIX
    settings_file: str | None = None
    http_host: str = "0.0.0.0"
    metrics_port: int | None = Field(9464, description="/metrics, /healthz, /readyz; 0 picks a free port, None turns it off")
    ingest_batch_size: int = Field(2000, ge=1)
    flush_interval_s: float = Field(1.0, gt=0)
    flush_concurrency: int = Field(
        4, ge=1, description="Connections flushed at once; each connection's rows stay in one thread, in order"
    )
    lease_ttl_s: float = Field(60.0, gt=0, description="A dead instance's connections wait this long")
    settings_ttl_s: float = Field(5.0, ge=0, description="How often stored settings are re-read")
    retry: RetryPolicy = RetryPolicy()  # e.g. WRITEBACK_RETRY__BASE_DELAY=PT0.5S (ISO 8601)
    breaker: BreakerPolicy = BreakerPolicy()

    def topic_models(self) -> dict[str, type[Event]]:
        return {
            self.subscriber_topic: SubscriberEvent,
            self.activity_topic: ActivityEvent,
            self.community_topic: CommunityListEvent,
        }

    @property
    def topics(self) -> list[str]:
        return list(self.topic_models())

    def consumer_config(self) -> dict[str, object]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # librdkafka's 1000 ms default throttles a fast consumer ~4.7x (local-stack notes).
            "fetch.queue.backoff.ms": 1,
            "partition.assignment.strategy": "cooperative-sticky",
        } | ({"group.instance.id": self.instance_id} if self.instance_id else {})
