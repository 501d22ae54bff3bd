"""Dead-letter records: what failed for good, with everything replay needs.

A record is produced and acknowledged by the broker before the ledger marks its row failed (or
before ingest commits past an undecodable message). A crash in between leaves the row in flight
(or the offset uncommitted), so the failure is met again and dead-lettered again: a dead letter
may repeat, never go missing, and replay is idempotent on the writeback id.

A record too large to carry (the original value plus the envelope is more than the topic takes)
is dead-lettered with a SHA-256 digest and size of the value instead of the value: the original
stays readable on its topic at the recorded position, and the letter still says why it failed.
Nothing is ever held back for being large.

Headers follow Kafka Connect's `__connect.errors.*` idea under our own prefix, so tools that only
read headers (kcat, a console consumer) can see where a record came from and why it failed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from writeback import metrics
from writeback.contract.events import (
    DLQ_TOPIC_PREFIX,
    MODELS_BY_TYPE,
    DeadLetter,
    ErrorClass,
    OriginalRecord,
    dead_letter_topic,
)
from writeback.contract.serde import EventSerde
from writeback.errors import (
    BrokerUnavailable,
    PublishError,
    RecordTooLarge,
    WritebackError,
)
from writeback.kafka.producer import Headers, Publisher, message_limit
from writeback.ledger.rows import Claimed
from writeback.ledger.store import RowResult

HEADER_PREFIX = "writeback.errors."
OMITTED_HEADER = HEADER_PREFIX + "value.omitted"
log = logging.getLogger("writeback.dead_letters")

INGEST_KIND = "ingest"
UNDECODABLE = "UNDECODABLE"  # not Avro we can read: bad framing, unknown schema id, corrupt body
INVALID_EVENT = "INVALID_EVENT"  # decodes, but breaks the contract (field and reason in message)


def headers(letter: DeadLetter) -> Headers:
    values = {
        "class": letter.error_class.value,
        "code": letter.error_code,
        "replay.count": str(letter.replay_count),
    }
    if letter.connection_id:
        values["connection"] = letter.connection_id
    if letter.original:
        first = letter.original[0]
        values |= {
            "topic": first.topic,
            "partition": str(first.partition),
            "offset": str(first.offset),
        }
        if first.omitted:
            values["value.omitted"] = f"sha256={first.value_sha256}; size={first.value_size}"
    return [(HEADER_PREFIX + name, value.encode()) for name, value in values.items()]


def without_values(letter: DeadLetter) -> DeadLetter:
    """The letter with each original's key and value replaced by the value's digest and size."""
    return letter.model_copy(
        update={
            "original": tuple(
                o
                if o.omitted
                else o.model_copy(
                    update={
                        "key": None,
                        "value": b"",
                        "value_sha256": hashlib.sha256(o.value).hexdigest(),
                        "value_size": len(o.value),
                    }
                )
                for o in letter.original
            )
        }
    )


def undecodable(
    original: OriginalRecord, code: str, reason: str, now: datetime, replay_count: int = 0
) -> DeadLetter:
    """An ingest dead letter: the raw record kept byte for byte, with why it was set aside."""
    return DeadLetter(
        replay_count=replay_count,
        crm_kind=INGEST_KIND,
        error_class=ErrorClass.POISON,
        error_code=code,
        error_message=reason,
        attempts=1,
        first_failure_at=now,
        last_failure_at=now,
        original=(original,),
    )


def failed_writeback(
    row: Claimed,
    result: RowResult,
    crm_kind: str,
    error_class: ErrorClass,
    serde: EventSerde,
    now: datetime,
    replay_count: int = 0,
) -> DeadLetter:
    """A writeback's dead letter; its event is re-framed as Avro under the topic it came from,
    so replay decodes it exactly as ingest did. An event that cannot be re-framed (a stored
    payload the contract no longer accepts) is left out: the ledger row still holds it, and the
    letter must not be lost over it."""
    model = MODELS_BY_TYPE[row.event_type]
    topic, partition, offset = row.source or (model.topic, 0, 0)
    try:
        event = model.model_validate(row.payload)
        originals: tuple[OriginalRecord, ...] = (
            OriginalRecord(
                topic=topic,
                partition=partition,
                offset=offset,
                key=event.key().encode(),
                value=serde.serialize(event, topic),
            ),
        )
    except (ValueError, WritebackError) as exc:
        log.warning("writeback %s: its event cannot be re-framed for the dead letter (%s)", row.id, type(exc).__name__)
        originals = ()
    return DeadLetter(
        writeback_id=row.id,
        connection_id=row.connection_id,
        account_id=row.account_id,
        crm_kind=crm_kind,
        error_class=error_class,
        error_code=result.error_code or "UNKNOWN_ERROR",
        error_message=result.error_message or "",
        attempts=row.attempts + int(result.counts_attempt),
        first_failure_at=min(row.first_failed_at or now, now),
        last_failure_at=now,
        replay_count=replay_count,
        original=originals,
    )


class DeadLetterSink:
    """Produces dead letters and waits for the broker's acknowledgement of every one.

    Size the publisher's `message.max.bytes` with `message_limit`, so a letter the topic would
    refuse fails at once and goes out in its digest form instead.
    """

    def __init__(self, publisher: Publisher, prefix: str = DLQ_TOPIC_PREFIX) -> None:
        self.publisher = publisher
        self.prefix = prefix

    @classmethod
    def connect(
        cls,
        bootstrap_servers: str,
        serde: EventSerde,
        prefix: str = DLQ_TOPIC_PREFIX,
        *,
        config: dict[str, Any] | None = None,
    ) -> DeadLetterSink:
        """A sink whose producer is sized to what the dead-letter topics accept. `config`: the
        clients' security properties (`ServiceConfig.kafka_config()`)."""
        try:
            limit = message_limit(bootstrap_servers, prefix, config=config)
        except KafkaException as exc:
            raise BrokerUnavailable(f"dead-letter topic limits unreadable: {exc}") from None
        publisher = Publisher(
            bootstrap_servers,
            serde,
            config={
                **(config or {}),
                "message.max.bytes": limit,
                "logger": logging.getLogger("writeback.kafka.producer"),
            },
        )
        return cls(publisher, prefix)

    def close(self) -> None:
        self.publisher.close()

    def topic_for(self, letter: DeadLetter) -> str:
        return dead_letter_topic(letter.crm_kind, self.prefix)

    def send(self, letters: Sequence[DeadLetter], timeout: float = 30.0) -> None:
        """Raise PublishError unless every letter (or its digest form) was acknowledged."""
        too_large = self._produce(letters, timeout)
        if too_large:
            smaller = [without_values(letter) for letter in too_large]
            if self._produce(smaller, timeout):
                raise PublishError(f"{len(too_large)} dead letters too large even without their values")
            for letter in smaller:
                metrics.DEAD_LETTERS_OMITTED.labels(letter.crm_kind).inc()
            log.warning("%d dead letters carry a digest: their records were too large to carry", len(smaller))

    def _produce(self, letters: Sequence[DeadLetter], timeout: float) -> list[DeadLetter]:
        """Produce and wait; the letters refused for their size are returned, not raised."""
        too_large: list[DeadLetter] = []
        for letter in letters:
            try:
                self.publisher.publish(letter, topic=self.topic_for(letter), headers=headers(letter))
            except RecordTooLarge:
                too_large.append(letter)
        if not letters:
            return too_large
        try:
            self.publisher.flush(timeout)
        except PublishError as exc:
            sized = [r for r, e in exc.failures if e.code() == KafkaError.MSG_SIZE_TOO_LARGE]
            if not exc.failures or len(sized) < len(exc.failures):
                raise
            too_large += [r for r in sized if isinstance(r, DeadLetter)]
        return too_large
