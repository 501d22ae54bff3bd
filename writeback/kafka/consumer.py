"""Consumer positions as the service keeps them: a batch is committed only after what it
covers is durable, and rewound to its first records when it could not be made durable.

Rebalances happen inside `consume`, between batches, and every batch is committed (or rewound)
before the next `consume`: a revoked partition never has a batch in progress.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from writeback.contract.events import OriginalRecord

log = logging.getLogger("writeback.kafka")


@dataclass(frozen=True, slots=True)
class Consumed:
    """A Kafka record as the service needs it (confluent-kafka's Message cannot be built in tests)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    replay_count: int = 0  # a record re-ingested from its dead letter: how often it was replayed

    @classmethod
    def of(cls, message: Message) -> Consumed:
        return cls(message.topic(), message.partition(), message.offset(), message.key(), message.value())

    def original(self) -> OriginalRecord:
        return OriginalRecord(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            key=self.key,
            value=self.value or b"",
        )


def records(messages: Sequence[Message]) -> list[Consumed]:
    records = []
    for message in messages:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", error.str())
            continue
        records.append(Consumed.of(message))
    return records


def _positions(records: Sequence[Consumed], first: bool) -> list[TopicPartition]:
    chosen: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if first:
            chosen.setdefault(key, r.offset)
        else:
            chosen[key] = r.offset + 1
    return [TopicPartition(t, p, o) for (t, p), o in chosen.items()]


def rewind(consumer: Consumer, records: Sequence[Consumed]) -> None:
    for position in _positions(records, first=True):
        try:
            consumer.seek(position)
        except KafkaException as exc:  # revoked meanwhile: its new owner starts from the commit
            log.info("not rewinding %s[%d]: %s", position.topic, position.partition, _brief(exc))


def commit(consumer: Consumer, records: Sequence[Consumed]) -> None:
    try:
        consumer.commit(offsets=_positions(records, first=False), asynchronous=False)
    except KafkaException as exc:
        # rows are durable; a redelivery after a failed commit adds nothing
        log.warning("commit failed, batch may be redelivered: %s", _brief(exc))


def _brief(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return error.str() if error is not None else type(exc).__name__
