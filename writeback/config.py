"""Process configuration: where Kafka, the registry and the ledger are.

Per-connection Writeback Settings (which writebacks, which schedules) are a different concern
and live in `writeback.settings`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SUBSCRIBER_TOPIC = "writeback.subscriber-events"
ACTIVITY_TOPIC = "writeback.activity-events"
COMMUNITY_TOPIC = "writeback.community-list-events"
EVENT_TOPICS = (SUBSCRIBER_TOPIC, ACTIVITY_TOPIC, COMMUNITY_TOPIC)


class ServiceConfig(BaseSettings):
    """Read from WRITEBACK_* environment variables (e.g. WRITEBACK_BOOTSTRAP_SERVERS)."""

    model_config = SettingsConfigDict(env_prefix="WRITEBACK_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    schema_registry_url: str = "http://127.0.0.1:8081/apis/ccompat/v7"
    database_url: str = "sqlite:///writeback.db"
    group_id: str = "writeback"
    topics: list[str] = Field(default_factory=lambda: list(EVENT_TOPICS))
    metrics_port: int = 9464

    def consumer_config(self) -> dict[str, object]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # librdkafka's 1000 ms default throttles a fast consumer ~4.7x (local-stack notes).
            "fetch.queue.backoff.ms": 1,
            "partition.assignment.strategy": "cooperative-sticky",
        }
