"""`NetforumAdapter`: a batch of writebacks in, one Outcome per writeback out, in input order.

A `write` runs in four steps, and only the last one changes anything in netFORUM:

1. Plan (no calls): which change each event is, or why it is skipped or refused.
2. Find the Individuals (GetQuery, at most 100 keys or addresses a call, once per write): by
   `cst_key` when the recipient has an integration id, else by primary email address. A recipient
   that matches nothing fails `UNKNOWN_CUSTOMER` here, and an empty GetQuery is not a fault.
3. Build every row and field value and refuse what xWeb would refuse; then look up the rows
   already written (GetQuery on `cma_activity_id IN (...)`): those writebacks are complete.
4. Apply in rounds: round k holds each recipient's k-th change (a recipient's consecutive
   mailing activities or tracking rows count as one change, since their rows do not depend on
   each other), so a recipient's changes land in order; activity rows of a round go in
   InsertFacadeObject calls of up to 100 objects. Once a recipient's writeback does not complete, its later ones are blocked.

Any failed call stops the batch: the rest gets the same retry (or, after a refused record,
`XWEB_FAULT_HALT`), so neither an outage nor a business rule that refuses every record is met
once per record. A multi-object insert is all or nothing; when xWeb refuses one of its objects,
all of them are retried, each in a call of its own, so the one refused fails alone.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from writeback.adapters.base import Disposition, ErrorKind, Outcome, Writeback
from writeback.contract.events import ActivityEvent, Recipient, SubscriberEvent

from . import errors, mapping
from .client import Row, XWebClient, where_in
from .config import Config
from .errors import XWebError
from .mapping import (
    ACTIVITY_OBJECT,
    INDIVIDUAL_OBJECT,
    Change,
    Customer,
    Fields,
    Refusal,
    Skip,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BATCH = 500
MAX_OBJECTS_PER_INSERT = 100  # the simulator's limit; xWeb documents none
MAX_IN_VALUES = 100  # literals per GetQuery IN list: keeps the WHERE clause a modest size
_INDIVIDUAL_COLUMNS = ("cst_key", "eml_key", "eml_address")


@dataclass(slots=True)
class _Item:
    index: int
    wb: Writeback
    change: Change | None  # None: not written (its outcome says why)
    outcome: Outcome | None = None  # decided before the rounds: skipped, refused, already written
    customer: Customer | None = None
    fields: Fields | None = None  # the activity row, or the Individual's bad-email fields


@dataclass(slots=True)
class _Run:
    """One `write`: the outcomes so far, the recipients that must wait, and the failure that
    stopped the batch, if one did."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    halt: XWebError | None = None


@dataclass(frozen=True, slots=True)
class _LiveUnsubscribe:
    cma_key: str
    at: datetime | None


class NetforumAdapter:
    """Writes seed-000 writebacks to one netFORUM site through xWeb; with `tracking`, seed 001's
    code/subcode pairs instead, each as one activity row of the recipient whose Integration ID
    is its customer key."""

    max_batch = MAX_BATCH

    def __init__(
        self,
        config: Config,
        *,
        time_zone: str = "UTC",
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        tracking: bool = False,
    ) -> None:
        self._zone = ZoneInfo(config.time_zone or time_zone)
        self._tracking = tracking
        self._client = XWebClient(config, clock=clock, today=today)
        self._alone: set[str] = set()  # writebacks whose multi-object insert was rolled back

    def __enter__(self) -> NetforumAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def write(self, batch: Sequence[Writeback]) -> list[Outcome]:
        run = _Run()
        items = [self._plan(index, wb) for index, wb in enumerate(batch)]
        pending = [item for item in items if item.outcome is None]
        self._find_customers(run, pending)
        self._build(pending)
        self._find_written(run, [item for item in pending if item.outcome is None and _inserts(item)])
        self._apply_in_rounds(run, items)
        return [run.outcomes[index] for index in range(len(batch))]

    # -- 1. plan --------------------------------------------------------------------------------

    def _plan(self, index: int, wb: Writeback) -> _Item:
        change = mapping.tracking_change_of(wb.event) if self._tracking else mapping.change_of(wb.event)
        if isinstance(change, Skip):
            return _Item(index, wb, None, Outcome.counted(wb.id, change.code, change.message))
        if isinstance(change, Refusal):
            return _Item(index, wb, None, Outcome.failed(wb.id, change.code, change.message))
        return _Item(index, wb, change)

    # -- 2. find the Individuals ----------------------------------------------------------------

    def _find_customers(self, run: _Run, items: list[_Item]) -> None:
        """Each recipient's Individual, with one GetQuery pass for the whole write by key and one
        by email: the lookups are this write's cache."""
        lookups: dict[str, dict[str, list[_Item]]] = {"cst_key": {}, "eml_address": {}}
        for item in items:
            recipient = _recipient(item.wb)
            if recipient.integration_id is None and self._tracking:
                item.outcome = _unknown(item, "tracking needs the recipient's Integration ID, its netFORUM customer key (001)")
            elif recipient.integration_id is None:
                assert recipient.email is not None
                lookups["eml_address"].setdefault(recipient.email.casefold(), []).append(item)
            elif (key := _guid(recipient.integration_id)) is not None:
                lookups["cst_key"].setdefault(key, []).append(item)
            else:
                item.outcome = _unknown(item, "the integration id is not a netFORUM customer key (a GUID)")
        for column, waiting in lookups.items():
            found = self._individuals(run, column, list(waiting))
            for value, matched in waiting.items():
                for item in matched:
                    self._match(run, item, column, found.get(value, []))

    def _match(self, run: _Run, item: _Item, column: str, customers: list[Customer]) -> None:
        if len(customers) == 1:
            item.customer = customers[0]
        elif customers:
            item.outcome = Outcome.failed(
                item.wb.id,
                errors.AMBIGUOUS_CUSTOMER,
                f"{len(customers)} netFORUM Individuals have this primary email address; give the "
                "customer key as the integration id",
            )
        elif run.halt is None:  # not looked up when the batch stopped: it waits instead
            what = "customer key" if column == "cst_key" else "primary email address"
            item.outcome = _unknown(item, f"no netFORUM Individual has this {what}")

    def _individuals(self, run: _Run, column: str, values: list[str]) -> dict[str, list[Customer]]:
        """Every value mapped to the Individuals whose `column` equals it (case-insensitively)."""
        found: dict[str, list[Customer]] = {}
        for chunk in _chunks(values, MAX_IN_VALUES):
            where = where_in(column, chunk)
            rows = self._attempt(
                run, lambda where=where: self._client.get_query(INDIVIDUAL_OBJECT, _INDIVIDUAL_COLUMNS, where)
            )
            if isinstance(rows, XWebError):
                break
            for row in rows:
                customer = Customer(
                    row["cst_key"].lower(), row.get("eml_key") or None, row.get("eml_address") or None
                )
                value = customer.cst_key if column == "cst_key" else (customer.eml_address or "").casefold()
                found.setdefault(value, []).append(customer)
        return found

    # -- 3. build, and find what is already written ---------------------------------------------

    def _build(self, items: list[_Item]) -> None:
        for item in items:
            if item.outcome is not None or item.customer is None:
                continue
            built = self._fields(item, item.customer)
            if isinstance(built, Refusal):
                item.outcome = Outcome.failed(item.wb.id, built.code, built.message)
            else:
                item.fields = built

    def _fields(self, item: _Item, customer: Customer) -> Fields | Refusal | None:
        event, key = item.wb.event, mapping.activity_id(item.wb.id)
        if item.change is Change.MAILING_ACTIVITY and isinstance(event, ActivityEvent):
            return mapping.mailing_activity_row(event, customer, key, self._zone)
        if item.change is Change.UNSUBSCRIBE and isinstance(event, SubscriberEvent):
            return mapping.unsubscribe_row(event, customer, key, self._zone)
        if item.change is Change.BAD_EMAIL and isinstance(event, SubscriberEvent):
            return mapping.bad_email_fields(event, customer)
        if item.change is Change.TRACKING and isinstance(event, ActivityEvent | SubscriberEvent):
            return mapping.tracking_row(event, customer, key, self._zone)
        return None

    def _find_written(self, run: _Run, items: list[_Item]) -> None:
        """Writebacks whose row is already in netFORUM (an earlier attempt stored it and its answer
        was lost, or the writeback was replayed) are complete and change nothing more."""
        by_key = {mapping.activity_id(item.wb.id).casefold(): item for item in items}
        for chunk in _chunks(list(by_key), MAX_IN_VALUES):
            rows = self._attempt(
                run,
                lambda chunk=chunk: self._client.get_query(
                    ACTIVITY_OBJECT, ("cma_key", "cma_activity_id"), where_in("cma_activity_id", chunk)
                ),
            )
            if isinstance(rows, XWebError):
                return
            for row in rows:
                item = by_key.get(row.get("cma_activity_id", "").casefold())
                if item is not None:
                    item.outcome = Outcome.completed(item.wb.id, row["cma_key"])

    # -- 4. apply -------------------------------------------------------------------------------

    def _apply_in_rounds(self, run: _Run, items: list[_Item]) -> None:
        queues: dict[str, deque[_Item]] = {}
        for item in items:
            queues.setdefault(item.wb.recipient_key, deque()).append(item)
        while queues:
            step: list[_Item] = []
            for recipient, queue in list(queues.items()):
                step += self._next_change(run, recipient, queue)
                if not queue:
                    del queues[recipient]
            if step:
                self._apply(run, step)

    def _next_change(self, run: _Run, recipient: str, queue: deque[_Item]) -> list[_Item]:
        """The recipient's next change to apply, once what is decided or must wait is settled: one
        writeback, or a run of mailing activities."""
        while queue and (queue[0].outcome is not None or run.halt is not None or recipient in run.blocked):
            self._settle_waiting(run, queue.popleft())
        if not queue:
            return []
        change = [queue.popleft()]
        while change[0].change in _ROW_ONLY and queue and _runs_on(queue[0]):
            change.append(queue.popleft())
        return change

    def _apply(self, run: _Run, step: list[_Item]) -> None:
        rows: list[_Item] = []
        live = self._live_unsubscribes(run, [item for item in step if item.change is Change.RESUBSCRIBE])
        for item in step:
            assert item.customer is not None and item.outcome is None
            if run.halt is not None:
                self._settle(run, item, self._waiting(run, item))
            elif item.change in _ROW_ONLY:
                rows.append(item)
            elif item.change is Change.UNSUBSCRIBE:
                if self._update(run, item, INDIVIDUAL_OBJECT, item.customer.cst_key, mapping.NO_EMAIL_SET):
                    rows.append(item)
            elif item.change is Change.RESUBSCRIBE:
                self._resubscribe(run, item, item.customer, live.get(item.customer.cst_key, []))
            else:
                assert item.change is Change.BAD_EMAIL and item.fields is not None
                if self._update(run, item, INDIVIDUAL_OBJECT, item.customer.cst_key, item.fields):
                    self._settle(run, item, Outcome.completed(item.wb.id, item.customer.cst_key))
        self._insert(run, rows)

    def _resubscribe(self, run: _Run, item: _Item, customer: Customer, live: list[_LiveUnsubscribe]) -> None:
        """Removes the unsubscribe's data: its activity rows soft-deleted (xWeb has no delete), then
        Do Not Contact by Email cleared. A resubscribe older than a live unsubscribe (a late replay)
        would undo that later unsubscribe, so it changes nothing."""
        moment = mapping.site_time(item.wb.occurred_at, self._zone)
        if any(row.at is not None and row.at > moment for row in live):
            message = "a later unsubscribe is on record; nothing was changed"
            self._settle(run, item, Outcome.counted(item.wb.id, errors.RESUBSCRIBE_SUPERSEDED, message))
            return
        for row in live:
            if not self._update(run, item, ACTIVITY_OBJECT, row.cma_key, mapping.SOFT_DELETE):
                return
        if self._update(run, item, INDIVIDUAL_OBJECT, customer.cst_key, mapping.NO_EMAIL_CLEARED):
            removed = (row.cma_key for row in live)
            self._settle(run, item, Outcome.completed(item.wb.id, customer.cst_key, *removed))

    def _live_unsubscribes(self, run: _Run, items: list[_Item]) -> dict[str, list[_LiveUnsubscribe]]:
        keys = sorted({item.customer.cst_key for item in items if item.customer is not None})
        found: dict[str, list[_LiveUnsubscribe]] = {}
        for chunk in _chunks(keys, MAX_IN_VALUES):
            where = f"{where_in('cma_cst_key', chunk)} AND cma_activity_code = '{mapping.UNSUBSCRIBE_CODE}'"
            columns = ("cma_key", "cma_cst_key", "cma_activity_date")
            rows = self._attempt(
                run,
                lambda where=where: self._client.get_query(ACTIVITY_OBJECT, columns, where, order_by=columns[2]),
            )
            if isinstance(rows, XWebError):
                return found
            for row in rows:
                at = mapping.parse_site_time(row.get("cma_activity_date", ""))
                found.setdefault(row["cma_cst_key"].lower(), []).append(_LiveUnsubscribe(row["cma_key"], at))
        return found

    def _insert(self, run: _Run, items: list[_Item]) -> None:
        """Activity rows in calls of up to 100 objects; a writeback whose insert was rolled back
        before goes in a call of its own."""
        alone = [[item] for item in items if item.wb.id in self._alone]
        pooled = [item for item in items if item.wb.id not in self._alone]
        for chunk in alone + _chunks(pooled, MAX_OBJECTS_PER_INSERT):
            objects = [item.fields for item in chunk if item.fields is not None]
            result = self._attempt(run, lambda objects=objects: self._client.insert(ACTIVITY_OBJECT, objects))
            for item, outcome in zip(chunk, self._inserted(chunk, result), strict=True):
                self._settle(run, item, outcome)

    def _inserted(self, chunk: list[_Item], result: list[Row] | XWebError) -> list[Outcome]:
        if isinstance(result, XWebError) and result.record_level and len(chunk) > 1:
            self._alone.update(item.wb.id for item in chunk)
            message = f"xWeb refused an object of the same insert ({result.code}); each is tried alone next"
            kind = ErrorKind.CONTENTION
            return [Outcome.retry(item.wb.id, errors.ROLLED_BACK, message, kind=kind) for item in chunk]
        if isinstance(result, XWebError):
            return [_failure(item.wb.id, result) for item in chunk]
        if len(result) != len(chunk):  # stored or not, the idempotency lookup of the retry will tell
            message = "InsertFacadeObject answered with another number of objects"
            return [Outcome.retry(item.wb.id, errors.INVALID_RESPONSE, message) for item in chunk]
        return [Outcome.completed(item.wb.id, row.get("cma_key", "")) for item, row in zip(chunk, result)]

    def _update(self, run: _Run, item: _Item, obj: str, key: str, fields: Fields) -> bool:
        """One UpdateFacadeObject for one writeback; on failure the writeback's outcome is settled."""
        result = self._attempt(run, lambda: self._client.update(obj, key, fields))
        if isinstance(result, XWebError):
            self._settle(run, item, _failure(item.wb.id, result))
            return False
        return True

    # -- outcomes and the batch's stop ----------------------------------------------------------

    def _attempt(self, run: _Run, call: Callable[[], T]) -> T | XWebError:
        """Run one call unless the batch has stopped. Any failure stops it: after a refused record
        the rest waits with XWEB_FAULT_HALT, after anything else with the same error."""
        if run.halt is not None:
            return run.halt
        try:
            return call()
        except XWebError as error:
            log.warning("netFORUM call failed: %s %s", error.code, error.message)
            run.halt = error
            if error.record_level:
                run.halt = XWebError(
                    ErrorKind.OUTAGE,
                    errors.FAULT_HALT,
                    f"xWeb refused a record earlier in this batch ({error.code}); the rest waits so that "
                    "repeated refusals cannot use up the xWeb user's daily fault limit",
                )
            return error

    def _settle_waiting(self, run: _Run, item: _Item) -> None:
        """An item the rounds do not apply: decided before them, blocked, or stopped. A writeback
        found already written stays complete even behind a blocked one: it happened."""
        decided = item.outcome
        if decided is not None and (
            decided.disposition is Disposition.COMPLETED or item.wb.recipient_key not in run.blocked
        ):
            self._settle(run, item, decided)
        else:
            self._settle(run, item, self._waiting(run, item))

    def _waiting(self, run: _Run, item: _Item) -> Outcome:
        if item.wb.recipient_key in run.blocked:
            return Outcome.blocked(item.wb.id)
        assert run.halt is not None
        return _failure(item.wb.id, run.halt)

    def _settle(self, run: _Run, item: _Item, outcome: Outcome) -> None:
        """Record an outcome. One that did not complete blocks the recipient's later writebacks,
        unless it is the stop of the whole batch: then they all wait with the stop's reason."""
        run.outcomes[item.index] = outcome
        stopped = run.halt is not None and outcome.error_code == run.halt.code
        if outcome.disposition is not Disposition.COMPLETED and not stopped:
            run.blocked.add(item.wb.recipient_key)
        if outcome.disposition is not Disposition.RETRY:
            self._alone.discard(item.wb.id)


def _failure(writeback_id: str, error: XWebError) -> Outcome:
    if error.record_level:
        return Outcome.failed(writeback_id, error.code, error.message)
    return Outcome.retry(writeback_id, error.code, error.message, kind=error.kind)


#: Changes that are one activity row and nothing else: a recipient's consecutive ones do not
#: depend on each other, so they go in one round.
_ROW_ONLY = frozenset({Change.MAILING_ACTIVITY, Change.TRACKING})


def _inserts(item: _Item) -> bool:
    return item.change in (*_ROW_ONLY, Change.UNSUBSCRIBE)


def _runs_on(item: _Item) -> bool:
    """Whether a recipient's next writeback joins its current run of row-only changes."""
    return item.outcome is None and item.change in _ROW_ONLY


def _recipient(wb: Writeback) -> Recipient:
    assert isinstance(wb.event, ActivityEvent | SubscriberEvent)  # planning refused the others
    return wb.event.recipient


def _unknown(item: _Item, message: str) -> Outcome:
    return Outcome.failed(item.wb.id, errors.UNKNOWN_CUSTOMER, message)


def _guid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text.strip().strip("{}")))
    except ValueError:
        return None


def _chunks(values: Sequence[T], size: int) -> list[list[T]]:
    return [list(values[start : start + size]) for start in range(0, len(values), size)]

