"""`PersonifyAdapter`: a batch of subscriber writebacks in, one Outcome per writeback out, in order.

A `write` is one database transaction:
1. Plan each writeback (no database): the interest areas and/or activity row, or why not.
2. Read, once for the batch, which writebacks are already applied (`WRITEBACK_APPLIED`) and
   which Master Customer IDs exist. Applied ones complete without a write (a replayed batch
   changes nothing); an unknown customer fails `UNKNOWN_CUSTOMER` and writes nothing.
3. Apply each writeback in input order (the flusher's `occurred_at` order per recipient) inside
   a SAVEPOINT, marking it applied in the same savepoint: a row the database refuses rolls back
   alone and fails with its code, its neighbours go on.
4. Commit. A database failure anywhere (unreachable, locked, login) rolls the whole batch back:
   every writeback that reached the database is retried, none is half-written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection as SAConnection

from writeback.adapters.base import Outcome, Writeback

from . import client, errors, mapping
from .config import Config
from .errors import DatabaseError
from .mapping import Direction, Plan, Refusal, Skip

log = logging.getLogger(__name__)

MAX_BATCH = 500


@dataclass(slots=True)
class _Item:
    wb: Writeback
    plan: Plan | None  # None: decided before the database (its outcome says why)
    outcome: Outcome | None = None


class PersonifyAdapter:
    """Writes seed-004 subscription changes to one Personify database."""

    max_batch = MAX_BATCH

    def __init__(
        self, config: Config, *, time_zone: str = "UTC", now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._config = config
        self._zone = ZoneInfo(config.time_zone or time_zone)
        self._now = now
        self._engine: sa.Engine | None = None

    def __enter__(self) -> PersonifyAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def write(self, batch: Sequence[Writeback]) -> list[Outcome]:
        items = [self._plan(wb) for wb in batch]
        todo = [item for item in items if item.outcome is None]
        if todo:
            try:
                self._write(todo)
            except DatabaseError as exc:
                log.warning("personify batch rolled back: %s", exc.code)
                for item in todo:
                    item.outcome = Outcome.retry(item.wb.id, exc.code, exc.message, kind=exc.kind)
        return [item.outcome for item in items if item.outcome is not None]

    def _plan(self, wb: Writeback) -> _Item:
        planned = mapping.plan(wb.event, self._config, self._zone)
        if isinstance(planned, Skip):
            return _Item(wb, None, Outcome.counted(wb.id, planned.code, planned.message))
        if isinstance(planned, Refusal):
            return _Item(wb, None, Outcome.failed(wb.id, planned.code, planned.message))
        return _Item(wb, planned)

    def _connect(self) -> sa.Engine:
        """The engine, made at first use and kept: it holds the pool; the side table is created
        then if missing (the adapter owns it)."""
        if self._engine is None:
            engine = client.engine_for(self._config)
            try:
                client.ensure_applied_table(engine)
            except sa.exc.SQLAlchemyError as exc:
                engine.dispose()
                raise errors.classify(exc) from None
            self._engine = engine
        return self._engine

    def _write(self, items: list[_Item]) -> None:
        decided: dict[str, Outcome] = {}
        with client.transaction(self._connect()) as conn:
            done = client.already_applied(conn, [item.wb.id for item in items])
            known = client.existing_customers(conn, sorted({_plan(item).master_customer_id for item in items}))
            for item in items:
                decided[item.wb.id] = self._one(conn, item, done, known)
        for item in items:  # only now: outcomes of a rolled-back transaction would be false
            item.outcome = decided[item.wb.id]

    def _one(self, conn: SAConnection, item: _Item, done: set[str], known: set[str]) -> Outcome:
        plan, wb_id = _plan(item), item.wb.id
        if wb_id in done:
            return Outcome.completed(wb_id, plan.master_customer_id)
        if plan.master_customer_id not in known:
            message = "no Personify customer has this Master Customer ID; nothing was written"
            return Outcome.failed(wb_id, errors.UNKNOWN_CUSTOMER, message)
        savepoint = conn.begin_nested()
        try:
            wrote = self._apply(conn, plan)
            code = None if wrote else errors.NOTHING_TO_WRITE
            client.mark_applied(conn, wb_id, plan.master_customer_id, code, self._local_now())
        except sa.exc.IntegrityError as exc:
            savepoint.rollback()
            return _refused(wb_id, exc)
        savepoint.commit()
        done.add(wb_id)  # the same writeback twice in one batch is applied once
        if not wrote:
            return Outcome.counted(wb_id, errors.NOTHING_TO_WRITE, "the interest areas were already as the event says")
        return Outcome.completed(wb_id, plan.master_customer_id)

    def _apply(self, conn: SAConnection, plan: Plan) -> bool:
        """Writes the plan; whether anything was written."""
        wrote = False
        if plan.opt_in is not None:
            for code in plan.opt_in.codes:
                if plan.opt_in.direction is Direction.OUT:
                    wrote |= self._opt_out(conn, plan, code)
                else:
                    wrote |= self._opt_in(conn, plan, code, plan.opt_in.all_mail)
        if plan.activity is not None:
            row = plan.activity
            by = self._config.added_by
            client.add_activity(conn, plan.master_customer_id, row.code, row.date, row.text, by, self._local_now())
            wrote = True
        return wrote

    def _opt_out(self, conn: SAConnection, plan: Plan, code: str) -> bool:
        """Ends the open period(s) of the interest area at the unsubscribe's time. A period that
        began after it (a late, replayed unsubscribe) is left open: that opt-in is newer."""
        ended = False
        for period_id, begin in client.open_periods(conn, plan.master_customer_id, code):
            if begin > plan.at:
                continue
            reason, by = self._config.opt_out_reason_code, self._config.added_by
            client.end_period(conn, period_id, plan.at, reason, by, self._local_now())
            ended = True
        return ended

    def _opt_in(self, conn: SAConnection, plan: Plan, code: str, all_mail: bool) -> bool:
        """Opens a new period unless one is open; for "all mail", only for interest areas the
        customer has had (a resubscribe to all mail never adds an interest area)."""
        if client.open_periods(conn, plan.master_customer_id, code):
            return False
        if all_mail and not client.has_had_period(conn, plan.master_customer_id, code):
            return False
        client.open_period(conn, plan.master_customer_id, code, plan.at, self._config.added_by, self._local_now())
        return True

    def _local_now(self) -> datetime:
        return mapping.local_time(self._now(), self._zone)


def _plan(item: _Item) -> Plan:
    assert item.plan is not None
    return item.plan


def _refused(wb_id: str, exc: sa.exc.IntegrityError) -> Outcome:
    """A row the database refused. The customer was found, so a foreign key refusing it is a
    code Personify does not have (an interest area of Manage Unsubscribe, or an activity code)."""
    text = str(exc.orig)
    if "foreign key" in text.lower() or "FOREIGN KEY" in text:
        message = "Personify refused the row: an interest-area, activity or reason code is not among its application codes"
        return Outcome.failed(wb_id, errors.UNKNOWN_CODE, message)
    return Outcome.failed(wb_id, errors.ROW_REFUSED, errors.scrub(text))
