"""Dead-letter records: what failed for good, with everything replay needs.

A record is produced and acknowledged by the broker before the ledger marks its row failed (or
before ingest commits past an undecodable message). A crash in between leaves the row in flight
(or the offset uncommitted), so the failure is met again and dead-lettered again: a dead letter
may repeat, never go missing, and replay is idempotent on the writeback id.

Headers follow Kafka Connect's `__connect.errors.*` idea under our own prefix, so tools that only
read headers (kcat, a console consumer) can see where a record came from and why it failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from writeback.events import (
    DLQ_TOPIC_PREFIX,
    EVENT_KINDS,
    DeadLetter,
    ErrorClass,
    OriginalRecord,
)
from writeback.ledger.store import RowResult
from writeback.producers.publisher import Headers, Publisher
from writeback.serde import EventSerde
from writeback.writebacks import Writeback

HEADER_PREFIX = "writeback.errors."
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
    return [(HEADER_PREFIX + name, value.encode()) for name, value in values.items()]


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
    row: Writeback,
    result: RowResult,
    crm_kind: str,
    error_class: ErrorClass,
    serde: EventSerde,
    now: datetime,
    replay_count: int = 0,
) -> DeadLetter:
    """A writeback's dead letter; its event is re-framed as Avro under the topic it came from,
    so replay decodes it exactly as ingest did."""
    model = EVENT_KINDS[row.event_type]
    event = model.model_validate(row.event)
    topic, partition, offset = row.source or (model.topic, 0, 0)
    original = OriginalRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=event.key().encode(),
        value=serde.serialize(event, topic),
    )
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
        original=(original,),
    )


class DeadLetterSink:
    """Produces dead letters and waits for the broker's acknowledgement of every one."""

    def __init__(self, publisher: Publisher, prefix: str = DLQ_TOPIC_PREFIX) -> None:
        self.publisher = publisher
        self.prefix = prefix

    def topic_for(self, letter: DeadLetter) -> str:
        return self.prefix + letter.crm_kind

    def send(self, letters: Sequence[DeadLetter], timeout: float = 30.0) -> None:
        """Raise PublishError unless every letter was acknowledged."""
        if not letters:
            return
        for letter in letters:
            self.publisher.publish(letter, topic=self.topic_for(letter), headers=headers(letter))
        self.publisher.flush(timeout)
