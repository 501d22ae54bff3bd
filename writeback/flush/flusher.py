"""The flusher: closed windows become CRM calls, and each row's outcome is recorded.

Only the holder of a connection's lease claims its rows, so several instances on one database
never flush a row twice, and each recipient's rows go out in `occurred_at` order. Failed rows are
dead-lettered (and acknowledged) before the ledger marks them failed: a crash in between leaves
them in flight, the next lease holder returns them to pending, and the adapter's idempotency
makes the second attempt write nothing new.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from writeback import logs, metrics
from writeback.adapters.base import Adapter, ErrorKind, Outcome, Writeback
from writeback.contract.events import MODELS_BY_TYPE, validation_summary
from writeback.contract.serde import EventSerde
from writeback.errors import PublishError, RegistryUnavailable
from writeback.flush.breaker import (
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    Transition,
)
from writeback.flush.retries import (
    RetryPolicy,
    batch_health,
    decide,
    error_class,
    error_kind,
)
from writeback.kafka import dead_letters
from writeback.kafka.dead_letters import DeadLetterSink
from writeback.ledger.rows import Claimed, Status, WritebackClass
from writeback.ledger.store import Ledger, RowResult
from writeback.schedules import cadence
from writeback.settings import Account, Connection, Settings

log = logging.getLogger("writeback.flusher")

ADAPTER_ERROR = "ADAPTER_ERROR"  # the adapter raised instead of answering: treated as an outage
NO_OUTCOME = "NO_OUTCOME"  # the adapter answered for fewer rows than it was given
UNREADABLE_EVENT = "UNREADABLE_EVENT"  # the stored event no longer fits the contract

AdapterFactory = Callable[[Account, Connection], Adapter | None]


def open_adapter(account: Account, connection: Connection) -> Adapter | None:
    """The connection's adapter, or None while its kind has none (its rows wait, pending)."""
    opener = connection.kind_of().open
    return opener(account, connection) if opener is not None else None


def instance_owner() -> str:
    """A lease owner unique to this process, readable in the database."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(slots=True)
class FlushReport:
    batches: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # status -> rows
    dead_letters: int = 0

    def add(self, results: Sequence[RowResult]) -> None:
        for result in results:
            self.outcomes[result.status.value] = self.outcomes.get(result.status.value, 0) + 1

    def merge(self, other: FlushReport) -> None:
        self.batches += other.batches
        self.dead_letters += other.dead_letters
        for status, rows in other.outcomes.items():
            self.outcomes[status] = self.outcomes.get(status, 0) + rows


class Flusher:
    def __init__(
        self,
        ledger: Ledger,
        settings: Callable[[], Settings],
        adapters: AdapterFactory,
        sink: DeadLetterSink,
        serde: EventSerde,
        *,
        owner: str | None = None,
        policy: RetryPolicy | None = None,
        breakers: BreakerRegistry | None = None,
        lease_ttl: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        stop: threading.Event | None = None,
        concurrency: int = 1,
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self.adapters = adapters
        self.sink = sink
        self.serde = serde
        self.owner = owner or instance_owner()
        self.policy = policy or RetryPolicy()
        self.breakers = breakers or BreakerRegistry()
        self.breakers.on_change(_breaker_metrics)
        self.lease_ttl = lease_ttl
        self.clock = clock
        self.rng = rng or random.Random()
        # set when the process is stopping: the batch in flight is finished, no other is claimed
        self.stopping = stop or threading.Event()
        self.concurrency = concurrency
        self._open: dict[str, tuple[Connection, Adapter]] = {}

    def close(self) -> None:
        for _, adapter in self._open.values():
            adapter.close()
        self._open.clear()

    def flush_due(self) -> FlushReport:
        """One pass: every connection with due rows, as far as its lease and breaker allow.

        Up to `concurrency` connections are flushed at once, each by one thread from claim to
        record, so a recipient's rows still go out in order: while one CRM answers, another's
        batch is prepared or sent (a deployment has many accounts, each CRM call mostly waits).
        """
        report = FlushReport()
        connection_ids = [] if self.stopping.is_set() else self.ledger.connections_with_due_rows(self.clock())
        if self.concurrency <= 1 or len(connection_ids) <= 1:
            for connection_id in connection_ids:
                if self.stopping.is_set():
                    break
                report.merge(self._flush_one(connection_id))
            return report
        with ThreadPoolExecutor(min(self.concurrency, len(connection_ids)), thread_name_prefix="flush") as pool:
            futures = [pool.submit(self._flush_one, c) for c in connection_ids]
        for future in futures:
            report.merge(future.result())  # re-raises an outage, once every connection has stopped
        return report

    def _flush_one(self, connection_id: str) -> FlushReport:
        try:
            return self.flush_connection(connection_id)
        except (PublishError, RegistryUnavailable, SQLAlchemyError):
            raise  # the broker, registry or database is away: every connection waits for it
        except Exception as exc:  # noqa: BLE001 - one connection's trouble must not stop the others
            log.warning(
                "connection %s: flush failed (%s); its rows are retried",
                connection_id,
                type(exc).__name__,
                extra=logs.fields(connection=connection_id),
            )
            return FlushReport()

    def flush_connection(self, connection_id: str, report: FlushReport | None = None) -> FlushReport:
        """Write the connection's due rows, batch after batch, while its breaker and lease allow.

        While the CRM answers one batch, the next is claimed and its events read: the flusher's
        own work overlaps the CRM's instead of following it. Calls still go out one at a time and
        in claim order, and a claim skips every recipient with a row in flight, so each
        recipient's rows reach the CRM in order. A batch claimed ahead and then not sent (the
        batch before it opened the breaker, the lease was lost, the process is stopping) goes
        back to pending, no attempt counted.
        """
        report = report if report is not None else FlushReport()
        found = self.settings().connection(connection_id)
        if found is None:
            log.warning("rows due for connection %s, which the settings no longer have", connection_id)
            return report
        account, connection = found
        breaker = self.breakers.get(connection_id)
        metrics.BREAKER_STATE.labels(connection_id).set(int(breaker.state))  # closed shows too
        adapter = self._adapter(account, connection)
        if adapter is None:
            return report
        if not self._lease(connection_id, self.clock(), starting=True):
            return report  # another instance is flushing it
        try:
            with ThreadPoolExecutor(1, thread_name_prefix=f"crm-{connection.kind}") as caller:
                batch = self._claim(connection_id, adapter, breaker)
                while batch is not None:
                    answer = caller.submit(self._call, adapter, connection, batch)
                    ahead = self._claim(connection_id, adapter, breaker)
                    going_on = self._settle(connection, breaker, batch, answer.result(), report)
                    if not (going_on and breaker.allow(self.clock()) and not self.stopping.is_set()):
                        if ahead is not None:
                            self.ledger.release([row.id for row in ahead.rows], self.owner, self.clock())
                        break
                    # nothing claimed ahead: the batch in flight may have held back later rows
                    batch = ahead or self._claim(connection_id, adapter, breaker)
        finally:
            self.ledger.release_lease(connection_id, self.owner)
        return report

    def _claim(self, connection_id: str, adapter: Adapter, breaker: CircuitBreaker) -> _Batch | None:
        """The next batch with its events read, or None: nothing due, breaker open, stopping."""
        if self.stopping.is_set() or not breaker.allow(self.clock()):
            return None
        rows = self.ledger.claim_due(connection_id, self.owner, self.clock(), adapter.max_batch)
        return _read(rows) if rows else None

    def _settle(
        self, connection: Connection, breaker: CircuitBreaker, batch: _Batch, answered: list[Outcome], report: FlushReport
    ) -> bool:
        """Decide, dead-letter and record a written batch; False once the lease is lost."""
        outcomes = batch.outcomes(answered)
        now = self.clock()
        results = [
            decide(o, wb.attempts, wb.first_failed_at, now, self.policy, self.rng)
            for wb, o in zip(batch.rows, outcomes, strict=True)
        ]
        report.dead_letters += self._dead_letter(connection, batch.rows, results, now)
        self.ledger.record(results, self.owner, now)
        breaker.record(batch_health(outcomes), now)
        report.batches += 1
        report.add(results)
        _outcome_metrics(connection.kind, batch.rows, outcomes, results, now)
        return self._lease(connection.id, now)

    def _lease(self, connection_id: str, now: datetime, *, starting: bool = False) -> bool:
        taken = self.ledger.acquire_lease(connection_id, self.owner, now, self.lease_ttl, starting=starting)
        if taken:
            metrics.LEASE_RENEWED.labels(connection_id).set(now.timestamp())
        return taken

    def _adapter(self, account: Account, connection: Connection) -> Adapter | None:
        """Adapters are kept per connection and rebuilt when its settings change."""
        cached = self._open.get(connection.id)
        if cached is not None and cached[0] == connection:
            return cached[1]
        if cached is not None:
            cached[1].close()
            del self._open[connection.id]
        try:
            adapter = self.adapters(account, connection)
        except Exception as exc:  # noqa: BLE001 - a misconfigured connection must not stop the others
            log.error(
                "connection %s cannot be opened (%s); its rows wait",
                connection.id,
                type(exc).__name__,
                extra=logs.fields(connection=connection.id, kind=connection.kind),
            )
            return None
        if adapter is None:
            log.warning("no adapter for %s connection %s; its rows wait", connection.kind, connection.id)
            return None
        self._open[connection.id] = (connection, adapter)
        return adapter

    def _call(self, adapter: Adapter, connection: Connection, batch: _Batch) -> list[Outcome]:
        """The adapter's outcomes for the batch's readable rows; an adapter that raises is an
        outage for all of them."""
        if not batch.typed:
            return []
        started = time.perf_counter()
        try:
            return list(adapter.write(batch.typed))
        except Exception as exc:
            log.exception("adapter for %s raised", connection.id, extra=logs.fields(connection=connection.id, kind=connection.kind))
            return [Outcome.retry(wb.id, ADAPTER_ERROR, type(exc).__name__) for wb in batch.typed]
        finally:
            metrics.FLUSH_BATCH_SECONDS.labels(connection.kind).observe(time.perf_counter() - started)

    def _dead_letter(
        self, connection: Connection, batch: Sequence[Claimed], results: list[RowResult], now: datetime
    ) -> int:
        letters = []
        for wb, result in zip(batch, results, strict=True):
            klass = error_class(result)
            if klass is not None:
                letters.append(
                    dead_letters.failed_writeback(
                        wb, result, connection.kind, klass, self.serde, now, wb.replay_count
                    )
                )
        self.sink.send(letters)  # raises unless acknowledged: the rows stay in flight
        for letter in letters:
            metrics.DEAD_LETTERS.labels(letter.crm_kind, letter.error_class.value).inc()
            log.warning(
                "writeback %s failed (%s) and was dead-lettered; `writeback show` has the CRM's message",
                letter.writeback_id,
                letter.error_code,
                extra=logs.fields(
                    connection=connection.id, kind=connection.kind, writeback_id=letter.writeback_id, error_code=letter.error_code
                ),
            )
        return len(letters)


@dataclass(slots=True)
class _Batch:
    """Claimed rows with their stored events read into the contract's models: the rows whose
    event no longer fits the contract already have their outcome."""

    rows: list[Claimed]
    typed: list[Writeback]
    unreadable: dict[str, Outcome]

    def outcomes(self, answered: Sequence[Outcome]) -> list[Outcome]:
        """One outcome per row, in claim order: the adapter's, or the flusher's own."""
        by_id = self.unreadable | {o.writeback_id: o for o in answered}
        return [
            by_id.get(row.id) or Outcome.retry(row.id, NO_OUTCOME, "the adapter gave no outcome", kind=ErrorKind.OUTAGE)
            for row in self.rows
        ]


def _read(rows: list[Claimed]) -> _Batch:
    """Run while the call before is out: building the models is about a fifth of the flusher's
    own work per row (bench/results/flush.md)."""
    typed, unreadable = [], {}
    for row in rows:
        try:
            event = MODELS_BY_TYPE[row.event_type].model_validate(row.payload)
        except (KeyError, ValueError) as exc:
            why = validation_summary(exc).replace("\n", "; ") if isinstance(exc, ValidationError) else type(exc).__name__
            unreadable[row.id] = Outcome.failed(row.id, UNREADABLE_EVENT, f"the stored event does not fit the contract: {why}")
            continue
        typed.append(Writeback(row.id, row.account_id, row.connection_id, row.wb_class, row.recipient_key, row.occurred_at, event))
    return _Batch(rows, typed, unreadable)


def _outcome_metrics(
    kind: str, batch: Sequence[Claimed], outcomes: Sequence[Outcome], results: Sequence[RowResult], now: datetime
) -> None:
    """Outcomes by code; how late completed writebacks are; retries and what the CRM asked for.
    Counted per batch and each label set looked up once: this runs for every row written."""
    counted: Counter[tuple[str, str]] = Counter()
    late: dict[str, tuple[Any, Any]] = {}  # per class: (end-to-end latency, window lateness)
    for row, outcome, result in zip(batch, outcomes, results, strict=True):
        counted[(result.status.value, result.error_code or "")] += 1
        if result.status is Status.COMPLETED:
            histograms = late.get(row.wb_class)
            if histograms is None:
                histograms = late[row.wb_class] = (
                    metrics.WRITEBACK_LATENCY.labels(kind, row.wb_class.value),
                    metrics.WINDOW_LATENESS.labels(kind, row.wb_class.value),
                )
            histograms[0].observe(max((now - row.occurred_at).total_seconds(), 0.0))
            if row.window_closes_at is not None:
                histograms[1].observe(max((now - row.window_closes_at).total_seconds(), 0.0))
        elif result.status is Status.PENDING:
            metrics.RETRIES_SCHEDULED.labels(kind, result.error_code or "").inc()
            if result.next_attempt_at is not None:
                metrics.RETRY_WAIT_SECONDS.labels(kind).observe(max((result.next_attempt_at - now).total_seconds(), 0.0))
        if error_kind(outcome) is ErrorKind.THROTTLED:
            metrics.THROTTLED.labels(kind).inc()
            if outcome.retry_after is not None:
                metrics.RETRY_AFTER_SECONDS.labels(kind).observe(outcome.retry_after)
    for (status, code), count in counted.items():
        metrics.FLUSH_OUTCOMES.labels(kind, status, code).inc(count)


def _breaker_metrics(transition: Transition) -> None:
    metrics.BREAKER_STATE.labels(transition.connection_id).set(int(transition.new))
    if transition.new is BreakerState.OPEN:
        metrics.BREAKER_TRIPS.labels(transition.connection_id).inc()


def refresh_gauges(ledger: Ledger, settings: Settings, now: datetime | None = None) -> None:
    """The backlog SREs alert on: rows per connection and status, the oldest due row, and each
    schedule's period, so a window can be called overdue once it has waited longer than that."""
    now = now or datetime.now(UTC)
    metrics.SCHEDULE_PERIOD_SECONDS.clear()
    for account in settings.accounts:
        for connection in account.connections:
            for wb_class, schedule in connection.schedules.items():
                period = cadence(schedule)
                if period is not None:
                    metrics.SCHEDULE_PERIOD_SECONDS.labels(connection.id, wb_class.value).set(period.total_seconds())
    metrics.LEDGER_ROWS.clear()
    counts = ledger.counts()
    for (connection_id, status), rows in counts.items():
        metrics.LEDGER_ROWS.labels(connection_id, status).set(rows)
    oldest = ledger.oldest_due(now)
    metrics.OLDEST_DUE_SECONDS.set((now - oldest).total_seconds() if oldest else 0)
    for gauge in (metrics.PENDING_ROWS, metrics.DUE_ROWS, metrics.CONNECTION_OLDEST_DUE_SECONDS):
        gauge.clear()
        for connection_id in {c for c, _status in counts}:  # zero, not absent, once drained
            for wb_class in WritebackClass:
                gauge.labels(connection_id, wb_class.value).set(0)
    for connection_id, wb_class, pending, due, closed in ledger.backlog(now):
        metrics.PENDING_ROWS.labels(connection_id, wb_class).set(pending)
        metrics.DUE_ROWS.labels(connection_id, wb_class).set(due)
        age = (now - closed).total_seconds() if closed is not None else 0.0
        metrics.CONNECTION_OLDEST_DUE_SECONDS.labels(connection_id, wb_class).set(age)


def run(
    flusher: Flusher,
    stop: threading.Event,
    *,
    interval: float = 1.0,
    on_pass: Callable[[], object] = lambda: None,
) -> None:
    """Flush every `interval` until stopped; a passing database or broker outage waits."""
    while not stop.is_set():
        try:
            flusher.flush_due()
            on_pass()
        except (PublishError, RegistryUnavailable) as exc:
            log.warning("dead letters not acknowledged, rows stay in flight: %s", exc)
        except Exception as exc:  # noqa: BLE001 - e.g. the database restarting
            log.warning("flush pass failed: %s", type(exc).__name__)
        stop.wait(interval)

