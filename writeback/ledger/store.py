"""The writeback list: what ingest inserts, what the flusher claims, and what happened to each.

Safety with several instances on one database comes from a lease per connection: only the
lease holder claims and flushes that connection's rows, so no row is flushed twice and each
recipient's rows are written in `occurred_at` order. Rows left `in_flight` by a holder that
died are returned to `pending` by the next holder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from writeback.ledger.migrate import migrate
from writeback.ledger.rows import Claimed, Status, WritebackClass
from writeback.ledger.tables import (
    UTCDateTime,
    accounts,
    connections,
    flush_leases,
    subscriber_events,
    subscriber_state,
    writeback_key,
    writebacks,
)

log = logging.getLogger("writeback.ledger")


@dataclass(slots=True)  # not frozen: ingest makes tens of thousands a second, and frozen init is slow
class NewWriteback:
    """A row as ingest creates it; `id` is deterministic so a redelivered event adds nothing."""

    id: str
    account_id: str
    connection_id: str
    wb_class: WritebackClass
    event_type: str
    event_id: str
    recipient_key: str
    occurred_at: datetime
    window_closes_at: datetime | None
    payload: str  # the event as JSON text, encoded once however many connections take it
    mailing_id: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    # a row refused at ingest (the resubscribe origin rule) is born failed, with its reason
    status: Status = Status.PENDING
    error_code: str | None = None
    error_message: str | None = None
    replay_count: int = 0  # a row recreated from a dead letter counts that replay


@dataclass(frozen=True, slots=True)
class StateChange:
    """What a subscriber event does to its recipient's state on one connection: recorded for
    every connection the origin rule protects, whether or not the event is written to it (a
    CRM's own unsubscribe is not written back to it, and is exactly what the rule remembers)."""

    event_id: str
    connection_id: str
    identities: tuple[str, ...]  # every identity the event carries (integration id, email)
    status: str  # subscribed | unsubscribed | bad_email
    occurred_at: datetime
    unsubscribe_source: str | None = None
    unsubscribe_connection_id: str | None = None  # the CRM connection a CRM_SYNC came from


@dataclass(frozen=True, slots=True)
class Inserted:
    added: int  # rows that were new
    conflicting: int = 0  # events whose id was stored with other content: the first one is kept


@dataclass(frozen=True, slots=True)
class RowResult:
    """The ledger's record of one flush outcome, already decided by the flusher's policy."""

    writeback_id: str
    status: Status  # completed | failed | pending (retry later)
    error_code: str | None = None
    error_message: str | None = None
    next_attempt_at: datetime | None = None
    counts_attempt: bool = True  # False for waits that are not the row's failure (order, credentials)


def create_engine(url: str) -> sa.Engine:
    # orjson reads the stored events (every claimed row's payload) several times faster than json
    codec: dict[str, Any] = {"json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **codec)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            # A backlog's rows land at random places of two indexes, so each batch dirties about
            # a page per row: a 16 MB page cache and a checkpoint every 10,000 pages (40 MB of
            # WAL) write a page hit by several batches once (bench/results/backlog.md).
            cursor.execute("PRAGMA cache_size=-16384")
            cursor.execute("PRAGMA wal_autocheckpoint=10000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, **codec)


def _insert(dialect: str, table: sa.Table) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


class Ledger:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.copy_rows = True  # PostgreSQL: COPY into a staging table (see `_copy_rows`)

    @classmethod
    def connect(cls, url: str, *, migrate_schema: bool = True) -> Ledger:
        engine = create_engine(url)
        if migrate_schema:
            migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # ingest ---------------------------------------------------------------------------

    def insert(
        self, rows: Sequence[NewWriteback], changes: Sequence[StateChange] = (), *, now: datetime
    ) -> Inserted:
        """Insert rows and apply state changes in one transaction. Existing ids are skipped, and
        the changes of an event id seen before are too, so state follows the stored events.

        This is ingest's hot path, so the rows go to the driver's executemany as ready tuples,
        without SQLAlchemy's per-row parameter processing (bench/results/ingest.md: within 1.2x
        of the database's own time for the same statement). Redelivered batches pay one more
        read, to tell a harmless repeat from the same event id reused for other content.
        """
        if not rows and not changes:
            return Inserted(0)
        with self.engine.begin() as conn:
            seen: set[str] = set()
            if changes:
                event_ids = list(dict.fromkeys(c.event_id for c in changes))
                seen = _present(conn, subscriber_events.c.event_id, event_ids)
                fresh = [e for e in event_ids if e not in seen]
                if fresh:
                    # another instance may be storing one of them now: its insert, landing first,
                    # carries the state, and this one takes the event as seen
                    claim = _insert(self.dialect, subscriber_events).on_conflict_do_nothing()
                    taken = conn.execute(claim.returning(subscriber_events.c.event_id), [{"event_id": e} for e in fresh])
                    seen |= set(fresh) - set(taken.scalars())
            kept, repeated = _first_events(rows, {c.event_id for c in changes}, seen)
            added = conflicting = 0
            if kept and self.dialect == "postgresql" and self.copy_rows:
                added = _copy_rows(conn, _row_params(kept, now, _aware))
            elif kept:
                # no RETURNING: the driver's row count says how many were new
                sql = _insert_rows_sql(self.engine.dialect.paramstyle)
                params = _row_params(kept, now, _sqlite_stamp if self.dialect == "sqlite" else _aware)
                added = conn.execution_options(preserve_rowcount=True).exec_driver_sql(sql, params).rowcount
            if added < len(kept) or repeated:
                conflicting = _conflicting(conn, [*kept, *repeated])
            merged = _state_rows(changes, seen)
            if merged:
                conn.execute(_upsert_subscriber(self.dialect), merged)
        return Inserted(added, conflicting)

    def subscribers(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Subscriber state for many (connection, identity) pairs in one round trip per 500."""
        wanted = sorted(set(keys))
        found: dict[tuple[str, str], dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = conn.execute(
                    sa.select(subscriber_state).where(
                        sa.tuple_(subscriber_state.c.connection_id, subscriber_state.c.identity).in_(chunk)
                    )
                ).mappings()
                found.update({(r["connection_id"], r["identity"]): dict(r) for r in rows})
        return found

    # flushing ---------------------------------------------------------------------------

    def acquire_lease(
        self, connection_id: str, owner: str, now: datetime, ttl: timedelta, *, starting: bool = False
    ) -> bool:
        """Take or renew the connection's lease; a new holder requeues abandoned rows.

        `starting`: the holder is about to flush from scratch, so any row of the connection still
        in flight is abandoned, its own included (an earlier pass of it that could not record,
        say while the database was away); a renewal mid-flush leaves its own claims alone."""
        with self.engine.begin() as conn:
            conn.execute(
                _insert(self.dialect, flush_leases)
                .values(connection_id=connection_id, owner=None, expires_at=None)
                .on_conflict_do_nothing(index_elements=["connection_id"])
            )
            previous = conn.execute(
                sa.select(flush_leases.c.owner).where(flush_leases.c.connection_id == connection_id)
            ).scalar()
            taken = conn.execute(
                flush_leases.update()
                .where(
                    flush_leases.c.connection_id == connection_id,
                    sa.or_(
                        flush_leases.c.owner.is_(None),
                        flush_leases.c.owner == owner,
                        flush_leases.c.expires_at < now,
                    ),
                )
                .values(owner=owner, expires_at=now + ttl)
            ).rowcount
            if taken and (starting or previous != owner):
                conn.execute(
                    writebacks.update()
                    .where(
                        writebacks.c.connection_id == connection_id,
                        writebacks.c.status == Status.IN_FLIGHT.value,
                    )
                    .values(status=Status.PENDING.value, claimed_by=None, updated_at=now)
                )
        return bool(taken)

    def release_lease(self, connection_id: str, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                flush_leases.update()
                .where(flush_leases.c.connection_id == connection_id, flush_leases.c.owner == owner)
                .values(owner=None, expires_at=None)
            )

    def connections_with_due_rows(self, now: datetime) -> list[str]:
        """Connections with rows to flush: due ones, or in-flight ones whose claimer no longer
        holds the lease (it died, or gave up mid-batch); the next holder requeues those."""
        held = sa.exists().where(
            flush_leases.c.connection_id == writebacks.c.connection_id,
            flush_leases.c.owner == writebacks.c.claimed_by,
            flush_leases.c.expires_at >= now,
        )
        orphaned = sa.and_(writebacks.c.status == Status.IN_FLIGHT.value, ~held)
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(writebacks.c.connection_id)
                    .where(_waiting(writebacks), sa.or_(_due(now), orphaned))
                    .group_by(writebacks.c.connection_id)
                ).scalars()
            )

    def claim_due(
        self, connection_id: str, owner: str, now: datetime, limit: int
    ) -> list[Claimed]:
        """Mark up to `limit` due rows in_flight, each recipient's in `occurred_at` order.

        A row is held back while an earlier row of the same recipient is still waiting (in
        backoff, or in flight), so a later event never overtakes an earlier one in the CRM.

        The walk follows the waiting-rows index in claim order and stops at `limit`, and the
        earlier-row test is a range of that same index: the cost stays flat however large the
        backlog, with or without the database's statistics (bench/results/scaling.md).
        """
        with self.engine.begin() as conn:
            claim = {"connection_id": connection_id, "now": now, "limit": limit}
            rows = conn.execute(_claim_statement(), claim).mappings().all()
            if not rows:
                return []
            seqs = [r["seq"] for r in rows]
            # only rows this update moved are ours, should a lease ever be shared by mistake
            claimed = set(
                conn.execute(
                    writebacks.update()
                    # lower(): a test the partial index's predicate cannot be proven from, so a
                    # planner without statistics takes the primary key, not the whole backlog
                    .where(writebacks.c.seq.in_(seqs), sa.func.lower(writebacks.c.status) == Status.PENDING.value)
                    .values(status=Status.IN_FLIGHT.value, claimed_by=owner, updated_at=now)
                    .returning(writebacks.c.seq)
                ).scalars()
            )
        return [_to_writeback(r) for r in rows if r["seq"] in claimed]

    def release(self, ids: Sequence[str], owner: str, now: datetime) -> int:
        """Rows this owner claimed and will not write after all (it is stopping, or the batch
        before them opened the breaker) go back to pending as they were: no attempt counted."""
        if not ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                writebacks.update()
                .where(
                    writebacks.c.key.in_([writeback_key(i) for i in ids]),
                    writebacks.c.claimed_by == owner,
                    sa.func.lower(writebacks.c.status) == Status.IN_FLIGHT.value,  # as in claim_due
                )
                .values(status=Status.PENDING.value, claimed_by=None, updated_at=now)
            ).rowcount

    def record(self, results: Iterable[RowResult], owner: str, now: datetime) -> None:
        """Store outcomes for rows this owner claimed; rows it no longer holds are left alone.

        Set-based: one UPDATE per distinct outcome (a batch that all completed is one
        statement), the rows named by their keys."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for result in results:
            outcome = (
                result.status,
                result.error_code,
                (result.error_message or "")[:1000] or None,
                result.next_attempt_at,
                result.counts_attempt,
            )
            groups.setdefault(outcome, []).append(writeback_key(result.writeback_id))
        with self.engine.begin() as conn:
            for (status, error_code, error_message, next_attempt_at, counts), keys in groups.items():
                values: dict[str, Any] = {
                    "status": status.value,
                    "attempts": writebacks.c.attempts + int(counts),
                    "error_code": error_code,
                    "error_message": error_message,
                    "claimed_by": None,
                    "updated_at": now,
                    "next_attempt_at": next_attempt_at,
                }
                if status is Status.COMPLETED:
                    values["completed_at"] = now
                if status is not Status.COMPLETED and error_code:
                    values["first_failed_at"] = sa.func.coalesce(writebacks.c.first_failed_at, now)
                conn.execute(
                    writebacks.update()
                    .where(
                        writebacks.c.key.in_(keys),
                        writebacks.c.claimed_by == owner,
                        sa.func.lower(writebacks.c.status) == Status.IN_FLIGHT.value,  # as in claim_due
                    )
                    .values(**values)
                )

    def close_windows(
        self,
        connection_id: str,
        now: datetime,
        *,
        wb_class: WritebackClass | None = None,
        mailing_id: str | None = None,
    ) -> int:
        """"Send activity now": make the matching pending rows due immediately."""
        conditions = [
            writebacks.c.connection_id == connection_id,
            writebacks.c.status == Status.PENDING.value,
            sa.or_(writebacks.c.window_closes_at.is_(None), writebacks.c.window_closes_at > now),
        ]
        if wb_class is not None:
            conditions.append(writebacks.c.wb_class == str(wb_class))
        if mailing_id is not None:
            conditions.append(writebacks.c.mailing_id == mailing_id)
        with self.engine.begin() as conn:
            return conn.execute(
                writebacks.update().where(*conditions).values(window_closes_at=now, updated_at=now)
            ).rowcount

    def requeue(self, ids: Sequence[str], now: datetime, *, replay: bool = False) -> int:
        """Failed rows go back to pending, due now; other rows are left alone.

        `writeback retry` keeps the attempts (the row has used them). A dead-letter replay gives
        a fresh retry budget and counts the replay, which its next dead letter will carry.
        """
        if not ids:
            return 0
        values: dict[str, Any] = {
            "status": Status.PENDING.value,
            "window_closes_at": now,
            "next_attempt_at": None,
            "updated_at": now,
        }
        if replay:
            values |= {"attempts": 0, "first_failed_at": None, "replay_count": writebacks.c.replay_count + 1}
        with self.engine.begin() as conn:
            return conn.execute(
                writebacks.update()
                .where(writebacks.c.key.in_([writeback_key(i) for i in ids]), writebacks.c.id.in_(ids), writebacks.c.status == Status.FAILED.value)
                .values(**values)
            ).rowcount

    def statuses(self, ids: Iterable[str]) -> dict[str, Status]:
        """Current status of each id that exists."""
        wanted = list(set(ids))
        found: dict[str, Status] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = conn.execute(
                    sa.select(writebacks.c.id, writebacks.c.status).where(
                        writebacks.c.key.in_([writeback_key(i) for i in chunk]), writebacks.c.id.in_(chunk)
                    )
                )
                found.update({i: Status(s) for i, s in rows})
        return found

    # settings -------------------------------------------------------------------------

    def replace_settings(
        self, account_rows: Sequence[dict[str, Any]], connection_rows: Sequence[dict[str, Any]]
    ) -> None:
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # instances starting together each store their settings: one at a time, or one's
                # inserts collide with rows another inserted after this delete's snapshot
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SETTINGS_LOCK})
            conn.execute(connections.delete())
            conn.execute(accounts.delete())
            if account_rows:
                conn.execute(accounts.insert(), list(account_rows))
            if connection_rows:
                conn.execute(connections.insert(), list(connection_rows))

    def settings_rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self.engine.connect() as conn:
            account_rows = conn.execute(sa.select(accounts).order_by(accounts.c.id)).mappings()
            account_list = [dict(r) for r in account_rows]
            connection_rows = conn.execute(
                sa.select(connections).order_by(connections.c.id)
            ).mappings()
            return account_list, [dict(r) for r in connection_rows]

    # the writeback list -------------------------------------------------------------------

    def list(
        self,
        *,
        status: Status | None = None,
        connection_id: str | None = None,
        account_id: str | None = None,
        mailing_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        query = sa.select(writebacks).order_by(writebacks.c.updated_at.desc()).limit(limit)
        if status is not None:
            query = query.where(_status_is(writebacks, status))
        if connection_id is not None:
            query = query.where(writebacks.c.connection_id == connection_id)
        if account_id is not None:
            query = query.where(writebacks.c.account_id == account_id)
        if mailing_id is not None:
            query = query.where(writebacks.c.mailing_id == mailing_id)
        if since is not None:
            query = query.where(writebacks.c.updated_at >= since)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def get(self, writeback_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(writebacks).where(
                        writebacks.c.key == writeback_key(writeback_id), writebacks.c.id == writeback_id
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def oldest_due(self, now: datetime) -> datetime | None:
        """When the longest-waiting due row's window closed (None: nothing is due)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.min(writebacks.c.window_closes_at)).where(_waiting(writebacks), _due(now))).scalar()

    def unwritten(self, connection_id: str, mailing_id: str) -> int:
        """Rows of one mailing for one connection not yet written (pending or in flight): what a
        change to that mailing's settings no longer reaches, since routing happens at ingest."""
        query = sa.select(sa.func.count()).where(
            writebacks.c.connection_id == connection_id,
            writebacks.c.mailing_id == mailing_id,
            writebacks.c.status.in_([Status.PENDING.value, Status.IN_FLIGHT.value]),
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def counts(self) -> dict[tuple[str, str], int]:
        """(connection, status) → rows: the gauge SREs watch for a growing backlog."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(writebacks.c.connection_id, writebacks.c.status, sa.func.count())
                .group_by(writebacks.c.connection_id, writebacks.c.status)
            )
            return {(c, s): n for c, s, n in rows}

    def backlog(self, now: datetime) -> list[tuple[str, str, int, int, datetime | None]]:
        """Per (connection, class): pending rows, due rows, and when the oldest due row's window
        closed. One grouped query for the flusher's gauges."""
        due = _due(now)
        closes = writebacks.c.window_closes_at
        query = (
            sa.select(
                writebacks.c.connection_id,
                writebacks.c.wb_class,
                sa.func.count(),
                sa.func.sum(sa.case((due, 1), else_=0)),
                sa.type_coerce(sa.func.min(sa.case((due, closes), else_=None)), closes.type),
            )
            .where(writebacks.c.status == Status.PENDING.value)
            .group_by(writebacks.c.connection_id, writebacks.c.wb_class)
        )
        with self.engine.connect() as conn:
            return [(c, k, int(n), int(d or 0), oldest) for c, k, n, d, oldest in conn.execute(query)]


_SETTINGS_LOCK = 0x73657474  # "sett": the advisory lock `replace_settings` takes on PostgreSQL

_INSERTED = (
    "key", "id", "account_id", "connection_id", "wb_class", "event_type", "event_id", "recipient_key",
    "mailing_id", "occurred_at", "window_closes_at", "status", "error_code", "error_message",
    "replay_count", "source_topic", "source_partition", "source_offset", "payload", "created_at",
    "updated_at",
)  # fmt: skip


@cache
def _insert_rows_sql(paramstyle: str) -> str:
    marker = "?" if paramstyle == "qmark" else "%s"
    return (
        f"INSERT INTO {writebacks.name} (attempts, {', '.join(_INSERTED)}) "
        f"VALUES (0, {', '.join([marker] * len(_INSERTED))}) ON CONFLICT (key) DO NOTHING"
    )


_STAGED = "writebacks_staged"


def _copy_rows(conn: sa.Connection, params: list[tuple[Any, ...]]) -> int:
    """PostgreSQL's bulk load: COPY the rows into a temporary table of this session (emptied at
    commit), then one INSERT ... SELECT that skips existing keys. COPY itself cannot skip
    conflicts; the two statements together beat executemany (bench/results/ingest.md)."""
    columns = ", ".join(_INSERTED)
    statement = f"COPY {_STAGED} ({columns}) FROM STDIN"
    driver_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGED} ON COMMIT DELETE ROWS "
            f"AS SELECT {columns} FROM {writebacks.name} WITH NO DATA"
        )
        with cursor.copy(statement) as copy:
            for row in params:
                copy.write_row(row)
        statement = (
            f"INSERT INTO {writebacks.name} (attempts, {columns}) SELECT 0, {columns} FROM {_STAGED} "
            "ON CONFLICT (key) DO NOTHING"
        )
        cursor.execute(statement)
        return int(cursor.rowcount)
    except driver_error as exc:
        # as SQLAlchemy would raise it: ingest tells a refused row (DataError) from an outage by it
        raise sa.exc.DBAPIError.instance(statement, None, exc, driver_error) from exc
    finally:
        cursor.close()


def _sqlite_stamp(value: datetime) -> str:
    """A UTC datetime as SQLAlchemy stores it in SQLite (the text that `UTCDateTime` reads and
    that bound comparisons are made against): the ISO form without its "+00:00"."""
    if value.tzinfo is not UTC:
        value = _aware(value).astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the ledger; use an aware UTC datetime")
    return value


def _row_params(rows: Sequence[NewWriteback], now: datetime, stamp: Callable[[datetime], Any]) -> list[tuple[Any, ...]]:
    created = stamp(now)
    closes: dict[datetime | None, Any] = {None: None}  # a batch's rows share a handful of windows
    for r in rows:
        if r.window_closes_at not in closes:
            closes[r.window_closes_at] = stamp(r.window_closes_at)
    return [
        (
            writeback_key(r.id),
            r.id,
            r.account_id,
            r.connection_id,
            r.wb_class.value,
            r.event_type,
            r.event_id,
            r.recipient_key,
            r.mailing_id,
            stamp(r.occurred_at),
            closes[r.window_closes_at],
            r.status.value,
            r.error_code,
            r.error_message,
            r.replay_count,
            r.source_topic,
            r.source_partition,
            r.source_offset,
            r.payload,
            created,
            created,
        )
        for r in rows
    ]


def _first_events(
    rows: Sequence[NewWriteback], tracked: set[str], seen: set[str]
) -> tuple[list[NewWriteback], list[NewWriteback]]:
    """The rows to insert, and those of a tracked event id the ledger has seen before: a
    repeated event adds no row on any connection. (Ingest keeps only the first of an event
    id's records within one batch.)"""
    if not seen:
        return list(rows), []
    kept, repeated = [], []
    for row in rows:
        (repeated if row.event_id in seen and row.event_id in tracked else kept).append(row)
    return kept, repeated


def _present(conn: sa.Connection, column: sa.Column[str], values: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        found.update(conn.execute(sa.select(column).where(column.in_(chunk))).scalars())
    return found


def _conflicting(conn: sa.Connection, rows: Sequence[NewWriteback]) -> int:
    """Events with rows whose event id is stored with other content (the same event id published twice with
    different data), or not stored at all for a repeated event (its other content took another
    connection); a plain redelivery matches what is stored."""
    stored: dict[str, Any] = {}
    keys = list({writeback_key(r.id) for r in rows})
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found = conn.execute(
            sa.select(writebacks.c.key, writebacks.c.id, writebacks.c.payload).where(writebacks.c.key.in_(chunk))
        )
        for key, stored_id, payload in found:
            stored[stored_id] = payload
            stored.setdefault(key, stored_id)
    conflicting = set()
    for row in rows:
        holder = stored.get(writeback_key(row.id))
        if holder is not None and holder != row.id:
            log.error("writebacks %s and %s share a 64-bit key; the second was not stored", holder, row.id)
        kept = stored.get(row.id)
        if isinstance(kept, str):  # SQLite hands back the JSON text when read this way
            kept = json.loads(kept)
        if kept != json.loads(row.payload):
            conflicting.add(row.event_id)
    return len(conflicting)


def _state_rows(changes: Sequence[StateChange], seen: set[str]) -> list[dict[str, Any]]:
    """One state row per (connection, identity) from the changes of events not seen before, as
    applying them one by one in arrival order would leave it (an older change than the one
    already applied is ignored, as the upsert's WHERE does): one statement may not update a row
    twice. Of two changes of one event id to one connection, the first is the event's."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    applied: set[tuple[str, str]] = set()
    for change in changes:
        if change.event_id in seen or (change.event_id, change.connection_id) in applied:
            continue
        applied.add((change.event_id, change.connection_id))
        for identity in change.identities:
            key = (change.connection_id, identity)
            before = latest.get(key)
            if before is not None and before["last_event_at"] > change.occurred_at:
                continue
            kept = change.unsubscribe_source is None and before is not None
            latest[key] = {
                "connection_id": change.connection_id,
                "identity": identity,
                "status": change.status,
                "unsubscribe_source": before["unsubscribe_source"] if kept else change.unsubscribe_source,
                "unsubscribe_connection_id": before["unsubscribe_connection_id"]
                if kept
                else change.unsubscribe_connection_id,
                "last_event_at": change.occurred_at,
            }
    return list(latest.values())


def _upsert_subscriber(dialect: str) -> Any:
    """Last event wins by `occurred_at`, whatever order the events arrived in."""
    stmt = _insert(dialect, subscriber_state)
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["connection_id", "identity"],
        set_={
            "status": excluded.status,
            "unsubscribe_source": sa.func.coalesce(
                excluded.unsubscribe_source, subscriber_state.c.unsubscribe_source
            ),
            "unsubscribe_connection_id": sa.case(
                (excluded.unsubscribe_source.is_not(None), excluded.unsubscribe_connection_id),
                else_=subscriber_state.c.unsubscribe_connection_id,
            ),
            "last_event_at": excluded.last_event_at,
        },
        where=subscriber_state.c.last_event_at <= excluded.last_event_at,
    )


def claim_query(connection_id: str, now: datetime, limit: int) -> sa.Select[Any]:
    """The due rows `Ledger.claim_due` takes, in claim order (public so the benchmark can show
    its plan)."""
    return _claim_statement().params(connection_id=connection_id, now=now, limit=limit)


@cache
def _claim_statement() -> sa.Select[Any]:
    """The claim with its values as parameters (connection_id, now, limit), built once: building
    it took about as long as running it on a small backlog."""
    now: Any = sa.bindparam("now", type_=UTCDateTime())
    earlier = writebacks.alias("earlier")
    blocked = (
        sa.select(earlier.c.seq)
        .where(
            earlier.c.connection_id == writebacks.c.connection_id,
            earlier.c.recipient_key == writebacks.c.recipient_key,
            earlier.c.occurred_at < writebacks.c.occurred_at,
            _waiting(earlier),  # the index's predicate; the test below is a filter on its rows
            ~_due(now, earlier),
        )
        # OFFSET 0 keeps PostgreSQL from turning the test into an anti-join, whose plan depends
        # on statistics a fresh backlog does not have: as a subplan it is one index range per row
        .offset(0)
        .exists()
    )
    return (
        sa.select(*(writebacks.c[name] for name in _CLAIMED))
        .where(
            writebacks.c.connection_id == sa.bindparam("connection_id", type_=sa.String()),
            _waiting(writebacks),
            _due(now),
            ~blocked,
        )
        .order_by(writebacks.c.recipient_key, writebacks.c.occurred_at, writebacks.c.seq)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )


def _status_is(table: Any, *statuses: Status) -> sa.ColumnElement[bool]:
    """A status test written with literals, as the partial indexes' predicates are: SQLite uses
    a partial index only for a query that repeats its predicate, and cannot see a bound value."""
    literals = [sa.literal_column(f"'{s.value}'") for s in statuses]
    return table.c.status == literals[0] if len(literals) == 1 else table.c.status.in_(literals)


def _waiting(table: Any) -> sa.ColumnElement[bool]:
    return _status_is(table, Status.PENDING, Status.IN_FLIGHT)


def _due(now: datetime, table: Any = writebacks) -> sa.ColumnElement[bool]:
    return sa.and_(
        table.c.status == Status.PENDING.value,
        table.c.window_closes_at.is_not(None),
        table.c.window_closes_at <= now,
        sa.or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= now),
    )


# what `Claimed` carries, no more: each instant read back costs the driver a parse per row
_CLAIMED = (
    "seq", "id", "account_id", "connection_id", "wb_class", "recipient_key", "occurred_at", "event_type",
    "payload", "attempts", "first_failed_at", "window_closes_at", "replay_count", "source_topic",
    "source_partition", "source_offset",
)  # fmt: skip


def _to_writeback(row: Any) -> Claimed:
    return Claimed(
        id=row["id"],
        account_id=row["account_id"],
        connection_id=row["connection_id"],
        wb_class=WritebackClass(row["wb_class"]),
        recipient_key=row["recipient_key"],
        occurred_at=row["occurred_at"],
        event_type=row["event_type"],
        payload=row["payload"],
        attempts=row["attempts"],
        first_failed_at=row["first_failed_at"],
        window_closes_at=row["window_closes_at"],
        replay_count=row["replay_count"],
        source=(
            (row["source_topic"], row["source_partition"], row["source_offset"])
            if row["source_topic"] is not None
            else None
        ),
    )
