"""Replay: dead letters go back through the flusher, and nothing is written twice.

A dead letter names its writeback. Replay puts that ledger row back to pending (or recreates it
from the letter's original event if this database never had it) and flushes it with the same
flusher `serve` uses, so the adapters' idempotency and the leases apply unchanged. A row that
already completed is skipped, which is what makes replaying the same letters twice harmless. A
replay that fails again is dead-lettered again with its replay count raised: the letter is
never dropped.

An ingest dead letter (a record that could not be decoded or broke the contract) holds the
record byte for byte; replay runs it through ingest again, as if just consumed. Once the cause
is fixed it becomes its writebacks (deterministic ids: replaying it twice adds nothing);
otherwise it is dead-lettered again, replay count raised.

Replay reads up to the end offsets it saw when it started (its own re-failures land after
them), and commits its consumer group's position only once every replayed row of a batch has an
outcome in the ledger, so a replay killed at any point resumes without losing a letter.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from writeback import metrics
from writeback.contract.events import DeadLetter, Event, OriginalRecord
from writeback.contract.serde import EventSerde
from writeback.errors import DecodeError
from writeback.flush.flusher import Flusher
from writeback.ingest.consume import Ingest
from writeback.ingest.incoming import from_event
from writeback.ingest.routing import route
from writeback.kafka import consumer as kafka
from writeback.kafka.consumer import Consumed
from writeback.kafka.dead_letters import INGEST_KIND
from writeback.ledger import Ledger
from writeback.ledger.rows import Status
from writeback.ledger.store import NewWriteback
from writeback.settings import Settings

log = logging.getLogger("writeback.replay")


@dataclass(frozen=True, slots=True)
class Filters:
    connection: str | None = None
    account: str | None = None
    error_code: str | None = None
    since: datetime | None = None  # on the letter's last failure
    until: datetime | None = None
    ids: frozenset[str] = frozenset()

    def match(self, letter: DeadLetter) -> bool:
        return (
            (self.connection is None or letter.connection_id == self.connection)
            and (self.account is None or letter.account_id == self.account)
            and (self.error_code is None or letter.error_code == self.error_code)
            and (self.since is None or letter.last_failure_at >= self.since)
            and (self.until is None or letter.last_failure_at < self.until)
            and (not self.ids or letter.writeback_id in self.ids)
        )


class Verdict:
    """What replay did (or, in a dry run, would do) with one letter."""

    REPLAY = "replay"  # its row failed: back to pending, then flushed
    RECREATE = "recreate"  # no row in this ledger: rebuilt from the original event
    REINGEST = "reingest"  # an ingest dead letter: its record goes through ingest again
    DONE = "skip: already completed"
    QUEUED = "skip: already pending"
    UNUSABLE = "skip: cannot be replayed"


@dataclass(slots=True)
class Summary:
    read: int = 0
    matched: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)  # final status of replayed rows

    def count(self, bucket: dict[str, int], key: str) -> None:
        bucket[key] = bucket.get(key, 0) + 1


@dataclass(frozen=True, slots=True)
class Planned:
    message: Message
    letter: DeadLetter
    verdict: str
    reason: str = ""


def original_reader(
    bootstrap_servers: str, timeout: float = 10.0, *, config: dict[str, Any] | None = None
) -> Callable[[OriginalRecord], OriginalRecord | None]:
    """Reads a record that its dead letter carries only as a digest from where it was consumed;
    None when it is gone (retention) or is not the record the digest names."""

    def read(original: OriginalRecord) -> OriginalRecord | None:
        consumer = Consumer(
            {
                **(config or {}),
                "bootstrap.servers": bootstrap_servers,
                "group.id": "writeback-replay-reader",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.assign([TopicPartition(original.topic, original.partition, original.offset)])
            message = consumer.poll(timeout)
        finally:
            consumer.close()
        if message is None or message.error() is not None or message.offset() != original.offset:
            return None
        value = message.value() or b""
        if hashlib.sha256(value).hexdigest() != original.value_sha256:
            return None
        return original.model_copy(update={"key": message.key(), "value": value, "value_sha256": None, "value_size": None})

    return read


def dead_letter_topics(consumer: Consumer, prefix: str, kinds: Sequence[str] = ()) -> list[str]:
    """The dead-letter topics present on the broker: one per CRM kind, and ingest's."""
    names = consumer.list_topics(timeout=10).topics
    wanted = {prefix + k for k in kinds}
    return sorted(t for t in names if t.startswith(prefix) and (not wanted or t in wanted))


class Replayer:
    def __init__(
        self,
        consumer: Consumer,
        ledger: Ledger,
        serde: EventSerde,
        settings: Callable[[], Settings],
        flusher: Flusher,
        *,
        ingest: Ingest | None = None,
        fetch: Callable[[OriginalRecord], OriginalRecord | None] = lambda _o: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wait: timedelta = timedelta(seconds=60),
    ) -> None:
        self.ingest = ingest  # what replays ingest dead letters; without it they are skipped
        self.fetch = fetch  # reads a record a dead letter could not carry (see `original_reader`)
        self.consumer = consumer
        self.ledger = ledger
        self.serde = serde
        self.settings = settings
        self.flusher = flusher
        self.clock = clock
        self.wait = wait

    # reading -------------------------------------------------------------------------------

    def read(self, topics: Sequence[str], from_beginning: bool = False) -> Iterator[Message]:
        """Every letter from the group's position (or the start) to the end seen now."""
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in self.consumer.list_topics(t, timeout=10).topics[t].partitions
        ]
        ends = {(tp.topic, tp.partition): self.consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
        starts = {(tp.topic, tp.partition): self.consumer.get_watermark_offsets(tp, timeout=10)[0] for tp in partitions}
        if not from_beginning:
            for tp in self.consumer.committed(partitions, timeout=10):
                if tp.offset >= 0:
                    starts[(tp.topic, tp.partition)] = tp.offset
        remaining = {k for k in ends if starts[k] < ends[k]}
        self.total = sum(max(ends[k] - starts[k], 0) for k in ends)
        if not remaining:
            return
        self.consumer.assign([TopicPartition(t, p, starts[(t, p)]) for t, p in remaining])
        while remaining:
            for message in self.consumer.consume(200, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("consume error: %s", error.str())
                    continue
                key = (message.topic(), message.partition())
                if key not in remaining or message.offset() >= ends[key]:
                    continue
                if message.offset() + 1 >= ends[key]:
                    remaining.discard(key)
                yield message

    # deciding ------------------------------------------------------------------------------

    def plan(self, messages: Sequence[Message], filters: Filters) -> list[Planned]:
        """Decode and filter letters and decide each one's verdict from the ledger."""
        letters = []
        for message in messages:
            try:
                letter = self.serde.deserialize_dead_letter(message.topic(), message.value())
            except DecodeError as exc:
                log.warning("undecodable dead letter %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), exc)
                continue
            if filters.match(letter):
                letters.append((message, letter))
        statuses = self.ledger.statuses(lt.writeback_id for _, lt in letters if lt.writeback_id)
        planned = []
        for message, letter in letters:
            status = statuses.get(letter.writeback_id or "")
            if letter.crm_kind == INGEST_KIND:
                planned.append(self._plan_reingest(message, letter))
            elif letter.writeback_id is None or letter.connection_id is None:
                planned.append(Planned(message, letter, Verdict.UNUSABLE, "no writeback id or connection"))
            elif status is Status.COMPLETED:
                planned.append(Planned(message, letter, Verdict.DONE))
            elif status in (Status.PENDING, Status.IN_FLIGHT):
                planned.append(Planned(message, letter, Verdict.QUEUED))
            elif status is Status.FAILED:
                planned.append(Planned(message, letter, Verdict.REPLAY))
            else:
                planned.append(Planned(message, letter, Verdict.RECREATE))
        return planned

    def _plan_reingest(self, message: Message, letter: DeadLetter) -> Planned:
        if self.ingest is None or not letter.original:
            return Planned(message, letter, Verdict.UNUSABLE, "an ingest letter without its record or an ingest")
        first = letter.original[0]
        if not first.omitted:
            return Planned(message, letter, Verdict.REINGEST)
        fetched = self.fetch(first)
        if fetched is None:
            return Planned(
                message,
                letter,
                Verdict.UNUSABLE,
                f"the record was too large to carry and is no longer readable as it was at "
                f"{first.topic}[{first.partition}]@{first.offset}",
            )
        return Planned(message, letter.model_copy(update={"original": (fetched, *letter.original[1:])}), Verdict.REINGEST)

    # replaying -----------------------------------------------------------------------------

    def replay(self, planned: Sequence[Planned], summary: Summary) -> None:
        """Requeue or recreate, flush, and wait until each replayed row has an outcome; ingest
        letters go through ingest again."""
        self._reingest([p.letter for p in planned if p.verdict == Verdict.REINGEST], summary)
        now = self.clock()
        requeue = [p.letter.writeback_id for p in planned if p.verdict == Verdict.REPLAY]
        recreated = []
        for p in planned:
            if p.verdict == Verdict.RECREATE:
                row = self._recreate(p.letter, now)
                if row is None:
                    summary.count(summary.verdicts, Verdict.UNUSABLE)
                    continue
                recreated.append(row)
            summary.count(summary.verdicts, p.verdict)
        self.ledger.requeue([i for i in requeue if i], now, replay=True)
        self.ledger.insert(recreated, now=now)
        ids = [i for i in requeue if i] + [r.id for r in recreated]
        if not ids:
            return
        connections = sorted({p.letter.connection_id for p in planned if p.letter.connection_id})
        deadline = time.monotonic() + self.wait.total_seconds()
        while True:
            for connection in connections:
                self.flusher.flush_connection(connection)
            states = self.ledger.statuses(ids)
            waiting = [i for i in ids if states.get(i) in (Status.PENDING, Status.IN_FLIGHT)]
            if not waiting or time.monotonic() > deadline:
                break  # rows still waiting (a backoff, an open breaker) are durable: serve finishes them
            time.sleep(0.2)
        for i in ids:
            summary.count(summary.outcomes, states.get(i, Status.PENDING).value)

    def _reingest(self, letters: Sequence[DeadLetter], summary: Summary) -> None:
        """Each letter's record, as if just consumed: stored as its writebacks (pending, in
        their schedule's window) or dead-lettered again before this returns."""
        if not letters or self.ingest is None:
            return
        records = [
            Consumed(o.topic, o.partition, o.offset, o.key, o.value, replay_count=letter.replay_count + 1)
            for letter in letters
            for o in letter.original[:1]
        ]
        report = self.ingest.handle(records)
        summary.outcomes["ingested"] = summary.outcomes.get("ingested", 0) + report.consumed - report.rejected
        summary.outcomes["dead-lettered again"] = summary.outcomes.get("dead-lettered again", 0) + report.rejected

    def _recreate(self, letter: DeadLetter, now: datetime) -> NewWriteback | None:
        found = self.settings().connection(letter.connection_id or "")
        if found is None or not letter.original or letter.writeback_id is None:
            return None
        _, connection = found
        original = letter.original[0]
        try:
            event: Event = self.serde.deserialize(original.topic, original.value, self.serde.model_of(original.value))
        except DecodeError:
            return None
        decision = route(event, connection)
        if decision.wb_class is None:
            return None
        found = from_event(Consumed(original.topic, original.partition, original.offset, original.key, original.value), event)
        return NewWriteback(
            id=letter.writeback_id,
            account_id=event.account_id,
            connection_id=connection.id,
            wb_class=decision.wb_class,
            event_type=event.event_type,
            event_id=event.event_id,
            recipient_key=found.recipient_key,
            occurred_at=event.occurred_at,
            window_closes_at=now,
            payload=event.model_dump_json(),
            mailing_id=found.mailing_id,
            source_topic=original.topic,
            source_partition=original.partition,
            source_offset=original.offset,
            replay_count=letter.replay_count + 1,
        )

    def commit(self, messages: Sequence[Message]) -> None:
        kafka.commit(self.consumer, [Consumed.of(m) for m in messages])

def run(
    replayer: Replayer,
    topics: Sequence[str],
    filters: Filters,
    *,
    limit: int | None = None,
    rate: float | None = None,
    dry_run: bool = False,
    from_beginning: bool = False,
    batch_size: int = 50,
    on_read: Callable[[int], object] = lambda _n: None,
    on_planned: Callable[[Planned], object] = lambda _p: None,
) -> Summary:
    """Replay matching letters in batches; a dry run decides and reports but changes nothing."""
    summary = Summary()
    started = time.monotonic()
    batch: list[Message] = []

    def process(messages: list[Message]) -> bool:
        """Handle one batch; False once the limit is reached."""
        planned = replayer.plan(messages, filters)
        if limit is not None and summary.matched + len(planned) > limit:
            planned = planned[: limit - summary.matched]
            # commit no further than the last letter handled: the rest stay for the next replay
            last = planned[-1].message if planned else None
            messages = messages[: messages.index(last) + 1] if last is not None else []
        summary.read += len(messages)
        summary.matched += len(planned)
        for p in planned:
            on_planned(p)
        if rate:
            ahead = summary.matched / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        if dry_run:
            for p in planned:
                summary.count(summary.verdicts, p.verdict)
        else:
            replayer.replay(planned, summary)
            replayer.commit(messages)
        on_read(len(messages))
        return limit is None or summary.matched < limit

    for message in replayer.read(topics, from_beginning):
        batch.append(message)
        if len(batch) >= batch_size:
            if not process(batch):
                break  # the limit is reached
            batch = []
    else:
        if batch:
            process(batch)
    if not dry_run:
        _count(summary)
    return summary


def _count(summary: Summary) -> None:
    """A replay's totals as counters: `writeback replay` pushes them when a Pushgateway is set."""
    metrics.REPLAY_RUNS.inc()
    for verdict, n in summary.verdicts.items():
        metrics.REPLAY_LETTERS.labels(verdict).inc(n)
    for outcome, n in summary.outcomes.items():
        metrics.REPLAY_OUTCOMES.labels(outcome).inc(n)
