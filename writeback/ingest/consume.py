"""Ingest: consumed records become pending writebacks, one per (event, enabled connection).

Offsets are committed only after the batch's rows (and the dead letters of its undecodable
records) are durable. A crash before the commit redelivers the batch; deterministic writeback
ids make the second insert add nothing, so nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
)
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from writeback import metrics
from writeback.contract.events import (
    DeadLetter,
    Source,
    SubscriberAction,
    SubscriberEvent,
)
from writeback.contract.serde import EventSerde
from writeback.errors import (
    DecodeError,
    InvalidEvent,
    PublishError,
    RegistryUnavailable,
)
from writeback.ingest.incoming import Incoming, incoming
from writeback.ingest.routing import Event, Routes
from writeback.ingest.windows import Windows
from writeback.kafka import consumer as kafka
from writeback.kafka import dead_letters
from writeback.kafka.consumer import Consumed
from writeback.kafka.dead_letters import DeadLetterSink
from writeback.ledger.rows import Status, WritebackClass
from writeback.ledger.store import Ledger, NewWriteback, StateChange
from writeback.settings import Account, Settings

log = logging.getLogger("writeback.ingest")

ORIGIN_MISMATCH = "ORIGIN_MISMATCH"
_WRITEBACK_IDS = uuid.UUID("6f1d2a8e-3c4b-5d6e-9f70-81a2b3c4d5e6")
_WRITEBACK_ID_PREFIX = _WRITEBACK_IDS.bytes
_STATUS_AFTER = {
    SubscriberAction.UNSUBSCRIBE: "unsubscribed",
    SubscriberAction.BAD_EMAIL: "bad_email",
    SubscriberAction.RESUBSCRIBE: "subscribed",
    SubscriberAction.SUBSCRIBE: "subscribed",
}
State = dict[tuple[str, str], dict[str, Any]]  # (connection, identity) -> subscriber state


def writeback_id(event_id: str, connection_id: str) -> str:
    """Deterministic, so a redelivered or replayed event maps to the row it already has.

    `str(uuid.uuid5(_WRITEBACK_IDS, f"{event_id}/{connection_id}"))`, without building a UUID
    object: ingest makes one per row, and the object was most of the cost.
    """
    digest = bytearray(hashlib.sha1(_WRITEBACK_ID_PREFIX + f"{event_id}/{connection_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Fanout:
    rows: list[NewWriteback] = field(default_factory=list)
    changes: list[StateChange] = field(default_factory=list)
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, reason)
    rejected: list[tuple[Consumed, str]] = field(default_factory=list)  # broke the contract: why


@dataclass(frozen=True, slots=True)
class BatchReport:
    consumed: int
    rejected: int
    rows: int
    added: int
    dropped: int


def fan_out(
    events: Sequence[Incoming],
    accounts: Mapping[str, Account],
    states: State,
    windows: Windows,
    now: datetime,
    routes: Routes,
) -> Fanout:
    """Route each event to its account's connections, in consumption order.

    `states` is the subscriber state before the batch, per (connection, identity); it is
    updated as the batch's own unsubscribes and resubscribes go by, so the origin rule sees an
    unsubscribe consumed earlier in the same batch. An event whose model a rule needs and that
    breaks the contract is rejected whole, on no connection.
    """
    out = Fanout()
    closes: dict[tuple[str, WritebackClass], datetime | None] = {}  # one window per batch
    keeps_state: dict[str, bool] = {}
    for found in events:
        account = accounts.get(found.account_id)
        if account is None:
            out.dropped[("none", "unknown_account")] += 1
            continue
        record = found.record
        try:
            decisions = [(connection, routes.route(found, connection)) for connection in account.connections]
            stateful = keeps_state.get(account.id)
            if stateful is None:
                stateful = keeps_state[account.id] = any(
                    c.kind_of().origin_rule or c.kind_of().subscriber_state for c in account.connections
                )
            event = found.event() if stateful and found.model is SubscriberEvent else None
        except InvalidEvent as exc:
            out.rejected.append((record, str(exc)))
            continue
        for connection, decision in decisions:
            refusal = None
            if event is not None:
                kind = connection.kind_of()
                if kind.origin_rule:
                    refusal = _origin_refusal(event, connection.id, found.identities, states)
                if kind.origin_rule or kind.subscriber_state:
                    # a refused resubscribe leaves the CRM's opt-out standing: the next is refused too
                    change = None if refusal is not None else _state_change(event, connection.id, found.identities)
                    if change is not None:
                        out.changes.append(change)
                        _remember(states, change)
            if decision.wb_class is None:
                out.dropped[(connection.kind, decision.reason or "not_taken")] += 1
                continue
            window = (connection.id, decision.wb_class)
            if refusal is None and window not in closes:
                closes[window] = windows.closes_at(connection, decision.wb_class, now)
            out.rows.append(
                NewWriteback(
                    id=writeback_id(found.event_id, connection.id),
                    account_id=found.account_id,
                    connection_id=connection.id,
                    wb_class=decision.wb_class,
                    event_type=found.model.event_type,
                    event_id=found.event_id,
                    recipient_key=found.recipient_key,
                    occurred_at=found.occurred_at,
                    window_closes_at=None if refusal is not None else closes[window],
                    payload=found.payload,
                    mailing_id=found.mailing_id,
                    source_topic=record.topic,
                    source_partition=record.partition,
                    source_offset=record.offset,
                    status=Status.FAILED if refusal is not None else Status.PENDING,
                    error_code=ORIGIN_MISMATCH if refusal is not None else None,
                    error_message=refusal,
                )
            )
    return out


def _first_occurrences(events: Sequence[Incoming]) -> tuple[list[Incoming], int]:
    """The first record of each event id in a batch, and how many later ones differ from it
    (a plain repeat is harmless; other content under a used id is reported)."""
    first: dict[str, Incoming] = {}
    kept, conflicting = [], 0
    for found in events:
        known = first.setdefault(found.event_id, found)
        if known is found:
            kept.append(found)
        else:
            conflicting += known.data != found.data
    return kept, conflicting


def state_keys(events: Iterable[Incoming], accounts: Mapping[str, Account]) -> set[tuple[str, str]]:
    """The (connection, identity) states the origin rule may read for these events."""
    keys = set()
    for found in events:
        if found.model is not SubscriberEvent or found.data.get("action") != SubscriberAction.RESUBSCRIBE:
            continue
        account = accounts.get(found.account_id)
        for connection in account.connections if account else ():
            if connection.kind_of().origin_rule:
                keys.update((connection.id, i) for i in found.identities)
    return keys


def _origin_refusal(
    event: Event, connection_id: str, known_as: Sequence[str], states: State
) -> str | None:
    """Why a marketing-side resubscribe may not undo an unsubscribe this CRM made, if so."""
    if not isinstance(event, SubscriberEvent) or event.action is not SubscriberAction.RESUBSCRIBE:
        return None
    if event.source is Source.CRM_SYNC:
        return None
    found = [s for i in known_as if (s := states.get((connection_id, i))) is not None]
    if not found:
        return None
    state = max(found, key=lambda s: s["last_event_at"])
    if state.get("status") == "subscribed" or state.get("unsubscribe_source") != Source.CRM_SYNC.value:
        return None
    if state.get("unsubscribe_connection_id") not in (None, connection_id):
        return None  # the opt-out was made in another CRM
    return (
        "the recipient's last unsubscribe came from this CRM (source CRM_SYNC); "
        "a resubscribe from the marketing side cannot undo it"
    )


def _state_change(event: Event, connection_id: str, known_as: tuple[str, ...]) -> StateChange | None:
    if not isinstance(event, SubscriberEvent) or not known_as:
        return None
    status = _STATUS_AFTER.get(event.action)
    if status is None:
        return None
    unsubscribed = event.action in (SubscriberAction.UNSUBSCRIBE, SubscriberAction.BAD_EMAIL)
    from_crm = unsubscribed and event.source is Source.CRM_SYNC
    return StateChange(
        event_id=event.event_id,
        connection_id=connection_id,
        identities=known_as,
        status=status,
        occurred_at=event.occurred_at,
        unsubscribe_source=event.source.value if unsubscribed else None,
        unsubscribe_connection_id=event.crm_connection_id if from_crm else None,
    )


def _remember(states: State, change: StateChange) -> None:
    """The ledger's rule, in memory: the latest `occurred_at` wins."""
    occurred_at = change.occurred_at
    for identity in change.identities:
        key = (change.connection_id, identity)
        before = states.get(key)
        last = before.get("last_event_at") if before else None
        if isinstance(last, datetime) and last > occurred_at:
            continue
        kept = change.unsubscribe_source is None and before is not None
        states[key] = {
            "status": change.status,
            "unsubscribe_source": before.get("unsubscribe_source") if kept else change.unsubscribe_source,
            "unsubscribe_connection_id": before.get("unsubscribe_connection_id")
            if kept
            else change.unsubscribe_connection_id,
            "last_event_at": occurred_at,
        }


class Ingest:
    """Decode, fan out and store one consumed batch; the caller commits after it returns."""

    def __init__(
        self,
        ledger: Ledger,
        serde: EventSerde,
        topic_models: Mapping[str, type[Event]],
        settings: Callable[[], Settings],
        sink: DeadLetterSink,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.serde = serde
        self.topic_models = topic_models
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.windows = Windows()
        self._routes = Routes()
        self._routed: Settings | None = None  # the snapshot `_routes` remembers decisions for

    def handle(self, records: Sequence[Consumed]) -> BatchReport:
        started = time.perf_counter()
        now = self.clock()
        events: list[Incoming] = []
        letters = []
        for topic, count in Counter(r.topic for r in records).items():
            metrics.EVENTS_CONSUMED.labels(topic).inc(count)
        for record in records:
            try:
                events.append(self._decode(record))
            except DecodeError as exc:
                letters.append(self._set_aside(record, exc, now))
        events, repeats = _first_occurrences(events)

        settings = self.settings()
        if settings is not self._routed:
            self._routes, self._routed = Routes(), settings
        accounts = {a.id: a for a in settings.accounts}
        keys = state_keys(events, accounts)
        states: State = self.ledger.subscribers(keys) if keys else {}
        fanout = fan_out(events, accounts, dict(states), self.windows, now, self._routes)
        if fanout.rejected:
            letters += [self._set_aside(record, InvalidEvent(reason), now) for record, reason in fanout.rejected]
            refused_ids = {id(record) for record, _ in fanout.rejected}
            events = [e for e in events if id(e.record) not in refused_ids]
        self.sink.send(letters)
        try:
            inserted = self.ledger.insert(fanout.rows, fanout.changes, now=now)
            added = inserted.added
            self._report_conflicts(inserted.conflicting)
        except (DataError, IntegrityError):
            # the database refused something validation let through: retrying the batch would
            # stop its partitions for good, so find the events it refuses and set them aside
            fanout, added, refused = self._store_apart(events, accounts, states, now)
            letters += refused

        self._report_conflicts(repeats)
        for (kind, reason), count in fanout.dropped.items():
            metrics.EVENTS_DROPPED.labels(kind, reason).inc(count)
        kinds = {c.id: c.kind for a in accounts.values() for c in a.connections}
        for (conn_id, wb_class), count in Counter((r.connection_id, r.wb_class.value) for r in fanout.rows).items():
            metrics.WRITEBACKS_INGESTED.labels(kinds.get(conn_id, "unknown"), wb_class).inc(count)
        if added < len(fanout.rows):
            metrics.DUPLICATES.inc(len(fanout.rows) - added)
        metrics.INGEST_BATCH_SECONDS.observe(time.perf_counter() - started)
        return BatchReport(
            consumed=len(records),
            rejected=len(letters),
            rows=len(fanout.rows),
            added=added,
            dropped=sum(fanout.dropped.values()),
        )

    def _store_apart(
        self,
        events: Sequence[Incoming],
        accounts: Mapping[str, Account],
        states: State,
        now: datetime,
    ) -> tuple[Fanout, int, list[DeadLetter]]:
        """Each event in a transaction of its own; those the database refuses are dead-lettered
        (acknowledged before this returns) with the database's reason, never its values."""
        stored, added, letters = Fanout(), 0, []
        for found in events:
            record = found.record
            trial = dict(states)
            one = fan_out([found], accounts, trial, self.windows, now, self._routes)
            try:
                inserted = self.ledger.insert(one.rows, one.changes, now=now)
                added += inserted.added
                self._report_conflicts(inserted.conflicting)
            except (DataError, IntegrityError) as exc:
                letters.append(self._set_aside(record, InvalidEvent(f"the ledger refused it: {_short(exc)}"), now))
                continue
            states = trial
            stored.rows += one.rows
            stored.changes += one.changes
            stored.dropped.update(one.dropped)
        self.sink.send(letters)
        return stored, added, letters

    @staticmethod
    def _report_conflicts(conflicting: int) -> None:
        if conflicting:
            metrics.CONFLICTING_DUPLICATES.inc(conflicting)
            log.warning(
                "%d event ids were seen before with different content; the first events are kept",
                conflicting,
            )

    def _decode(self, record: Consumed) -> Incoming:
        model = self.topic_models.get(record.topic)
        if model is None:
            raise DecodeError(f"topic: {record.topic!r} is not an event topic")
        return incoming(record, self.serde.decode_known(record.topic, record.value, model), model)

    @staticmethod
    def _set_aside(record: Consumed, exc: DecodeError, now: datetime) -> DeadLetter:
        code = dead_letters.INVALID_EVENT if isinstance(exc, InvalidEvent) else dead_letters.UNDECODABLE
        metrics.EVENTS_REJECTED.labels(record.topic, code).inc()
        log.warning("set aside %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        return dead_letters.undecodable(record.original(), code, str(exc), now, record.replay_count)


# the batch could not be made durable; it is consumed again after a pause
_RETRYABLE = (SQLAlchemyError, PublishError, RegistryUnavailable)
INGEST_ERROR = "INGEST_ERROR"  # handling this record raised: a bug it triggers, set aside


def run(
    consumer: Consumer,
    ingest: Ingest,
    stop: threading.Event,
    *,
    batch_size: int = 2000,
    poll_timeout: float = 0.5,
    retry_pause: float = 2.0,
    on_pass: Callable[[], object] = lambda: None,
) -> None:
    """The ingest loop: consume, store, commit; never dies on one record or a passing outage.

    What cannot be made durable now (database, broker or registry away) is retried from the
    same position; any other failure is the batch's records' doing, so they are handled one by
    one and a record that still fails is dead-lettered: one record never stops a partition.
    Rebalances happen inside `consume`, between batches, and every batch is committed before
    the next `consume`: a revoked partition never has an in-progress batch to finish or abandon.
    """
    while not stop.is_set():
        try:
            messages = consumer.consume(batch_size, timeout=poll_timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.fatal():
                raise  # e.g. another instance took this group.instance.id: no retry can help
            log.warning("consume failed, retrying: %s", _short(exc))
            stop.wait(retry_pause)
            continue
        records = kafka.records(messages)
        on_pass()
        if not records:
            continue
        try:
            try:
                ingest.handle(records)
            except _RETRYABLE:
                raise
            except Exception as exc:  # noqa: BLE001 - isolate the record that causes it
                metrics.INGEST_ERRORS.labels("isolated").inc()
                log.error("batch of %d failed (%s); storing its records one by one", len(records), _short(exc))
                for record in records:
                    _handle_alone(ingest, record)
        except _RETRYABLE as exc:
            metrics.INGEST_ERRORS.labels("retried").inc()
            log.warning("batch of %d not stored, retrying: %s", len(records), _short(exc))
            kafka.rewind(consumer, records)
            stop.wait(retry_pause)
            continue
        kafka.commit(consumer, records)


def _handle_alone(ingest: Ingest, record: Consumed) -> None:
    try:
        ingest.handle([record])
    except _RETRYABLE:
        raise
    except Exception as exc:  # noqa: BLE001 - this record triggers it: set it aside
        reason = f"ingest failed on this record ({type(exc).__name__}); report it with the record's position"
        log.error("set aside %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        metrics.EVENTS_REJECTED.labels(record.topic, INGEST_ERROR).inc()
        ingest.sink.send(
            [dead_letters.undecodable(record.original(), INGEST_ERROR, reason, ingest.clock(), record.replay_count)]
        )


def _short(exc: BaseException) -> str:
    """An error for the log without its details: database errors can quote row values."""
    if isinstance(exc, SQLAlchemyError):
        cause = getattr(exc, "orig", None)
        return type(exc).__name__ + (f" ({type(cause).__name__})" if cause is not None else "")
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
