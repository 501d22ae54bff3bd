"""An idempotent Kafka producer for our event models.

Keys are `"<account_id>:<recipient key>"`, so one recipient's events land on one partition and
stay in order; idempotence keeps a retried send from writing a record twice.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from writeback.contract.events import DeadLetter, Event
from writeback.contract.serde import EventSerde
from writeback.errors import BrokerUnavailable, PublishError, RecordTooLarge

Record = Event | DeadLetter
# what the broker says when it will not talk to us: a refused login or certificate
REFUSALS = (KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED)
DeliveryCallback = Callable[[Record, KafkaError | None], None]
Headers = list[tuple[str, bytes]]


def message_limit(
    bootstrap_servers: str, topic_prefix: str, timeout: float = 10.0, *, config: dict[str, Any] | None = None
) -> int:
    """The largest record the broker takes on the topics named with this prefix: the smallest
    of their `max.message.bytes` and of the broker's `message.max.bytes`, which topics created
    later inherit. A producer sized to it fails fast on a record that would be refused anyway."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0, **(config or {})})
    metadata = admin.list_topics(timeout=timeout)
    resources = [ConfigResource(ResourceType.BROKER, str(next(iter(metadata.brokers))))]
    resources += [ConfigResource(ResourceType.TOPIC, t) for t in metadata.topics if t.startswith(topic_prefix)]
    limits = []
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        entries = future.result(timeout)
        name = "message.max.bytes" if resource.restype == ResourceType.BROKER else "max.message.bytes"
        if name in entries and entries[name].value is not None:
            limits.append(int(entries[name].value))
    return min(limits) if limits else 1_000_000


class Publisher:
    def __init__(
        self,
        bootstrap_servers: str,
        serde: EventSerde,
        *,
        config: dict[str, Any] | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.serde = serde
        self.delivered = 0
        self.failures: list[tuple[Record, KafkaError]] = []
        refusals: list[KafkaError] = []  # why the broker would not talk to us (login, TLS)
        self._producer = Producer(
            {
                "error_cb": lambda e: refusals.append(e) if e.code() in REFUSALS else None,
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "compression.type": "lz4",
                "log_level": 0,
                **(config or {}),
            }
        )
        try:
            self._producer.list_topics(timeout=connect_timeout)
        except KafkaException as exc:
            self._producer.poll(0.5)  # serves error_cb
            reason = refusals[0].str() if refusals else exc.args[0].str() if exc.args else str(exc)
            raise BrokerUnavailable(
                f"Kafka broker at {bootstrap_servers} unreachable within {connect_timeout:.0f}s: {reason}"
            ) from None

    def publish(
        self,
        event: Record,
        *,
        topic: str | None = None,
        on_delivery: DeliveryCallback | None = None,
        headers: Headers | None = None,
    ) -> None:
        value = self.serde.serialize(event, topic)

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                self.delivered += 1
            else:
                self.failures.append((event, error))
            if on_delivery is not None:
                on_delivery(event, error)

        while True:
            try:
                self._producer.produce(
                    topic or event.topic,
                    value,
                    key=event.key().encode(),
                    headers=headers,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: serve delivery reports, then retry
            except KafkaException as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    raise RecordTooLarge(f"{len(value)} bytes: {error.str()}", [(event, error)]) from None
                raise PublishError(f"not produced: {error.str() if error else exc}") from None
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every delivery report; raise if any event was not acknowledged.

        Failures are reported once: a long-lived publisher (the dead-letter sink) starts each
        flush with a clean slate.
        """
        remaining = self._producer.flush(timeout)
        if remaining:
            raise PublishError(f"{remaining} events not acknowledged within {timeout:.0f}s")
        failures, self.failures = self.failures, []
        if failures:
            reasons = sorted({error.str() for _, error in failures})
            raise PublishError(f"{len(failures)} events failed: {'; '.join(reasons)}", failures)

    def close(self) -> None:
        self._producer.flush(30)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
