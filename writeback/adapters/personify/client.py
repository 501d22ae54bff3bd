"""The database side: one SQLAlchemy engine per connection, the tables as the adapter sees them
(only the columns it reads or writes), and the statements, always with bound parameters.

Portable SQL only (SQL Server is production; PostgreSQL and SQLite are tested): plain INSERT,
UPDATE and SELECT, savepoints, no RETURNING, no ON CONFLICT, no dialect functions. Tables are
declared without a schema and put in `db_schema` through `schema_translate_map`, except on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection as SAConnection

from writeback.adapters import calls
from writeback.adapters.base import ErrorKind
from writeback.errors import ConfigError

from . import errors
from .config import Config
from .errors import DatabaseError

_meta = sa.MetaData()

customer = sa.Table(
    "CUSTOMER",
    _meta,
    sa.Column("MASTER_CUSTOMER_ID", sa.String(24)),
    sa.Column("SUB_CUSTOMER_ID", sa.Integer),
)

cus_opt_in = sa.Table(
    "CUS_OPT_IN",
    _meta,
    sa.Column("CUS_OPT_IN_ID", sa.Integer, primary_key=True),
    sa.Column("MASTER_CUSTOMER_ID", sa.String(24)),
    sa.Column("SUB_CUSTOMER_ID", sa.Integer),
    sa.Column("OPTION_TYPE_CODE", sa.String(24)),
    sa.Column("OPTION_SHORT_NAME", sa.String(24)),
    sa.Column("OPTION_SHORT_SUBNAME", sa.String(24)),
    sa.Column("BEGIN_DATE", sa.DateTime),
    sa.Column("END_DATE", sa.DateTime),
    sa.Column("OPT_OUT_REASON_CODE", sa.String(24)),
    sa.Column("ADDED_BY", sa.String(30)),
    sa.Column("ADDED_ON", sa.DateTime),
    sa.Column("MODIFIED_BY", sa.String(30)),
    sa.Column("MODIFIED_ON", sa.DateTime),
)

cus_activity = sa.Table(
    "CUS_ACTIVITY",
    _meta,
    sa.Column("CUS_ACTIVITY_ID", sa.Integer, primary_key=True),
    sa.Column("MASTER_CUSTOMER_ID", sa.String(24)),
    sa.Column("SUB_CUSTOMER_ID", sa.Integer),
    sa.Column("ACTIVITY_CODE", sa.String(24)),
    sa.Column("ACTIVITY_DATE", sa.DateTime),
    sa.Column("ACTIVITY_TEXT", sa.String(400)),
    sa.Column("ADDED_BY", sa.String(30)),
    sa.Column("ADDED_ON", sa.DateTime),
)

#: The adapter's own table (it creates it when missing): one row per applied writeback.
applied = sa.Table(
    "WRITEBACK_APPLIED",
    sa.MetaData(),
    sa.Column("WRITEBACK_ID", sa.String(64), primary_key=True),
    sa.Column("MASTER_CUSTOMER_ID", sa.String(24), nullable=False),
    sa.Column("RESULT_CODE", sa.String(40)),
    sa.Column("APPLIED_ON", sa.DateTime, nullable=False),
)


def engine_for(config: Config) -> sa.Engine:
    """The connection's engine: credentials resolved now (never stored in settings), pooled
    connections checked before use (a daily flush finds yesterday's connections gone)."""
    try:
        if isinstance(config.database_url, str):
            url = sa.make_url(config.database_url)
            if config.username is not None:
                url = url.set(username=config.username)
            if config.password is not None:
                url = url.set(password=config.password.resolve().get_secret_value())
        else:
            url = sa.make_url(config.database_url.resolve().get_secret_value())
    except ConfigError as exc:
        raise DatabaseError(ErrorKind.CREDENTIALS, errors.SECRET_UNAVAILABLE, str(exc)) from None
    schema = None if url.get_backend_name() == "sqlite" else config.db_schema
    connect_args = _timeout_args(url.get_backend_name(), config.timeout_s)
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    calls.observe_engine(engine, "personify")
    return engine.execution_options(schema_translate_map={None: schema})


def _timeout_args(backend: str, timeout_s: float) -> dict[str, object]:
    if backend == "postgresql":
        return {"connect_timeout": max(1, int(timeout_s))}
    if backend == "mssql":
        return {"timeout": max(1, int(timeout_s))}
    if backend == "sqlite":
        return {"timeout": timeout_s}
    return {}


def _sqlite_connect(dbapi_connection: object, _record: object) -> None:
    """Foreign keys on (SQLite's default is off), and transactions left to SQLAlchemy, which
    pysqlite's own handling would break for SAVEPOINTs (SQLAlchemy's documented recipe)."""
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def ensure_applied_table(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        applied.create(conn, checkfirst=True)


@contextmanager
def transaction(engine: sa.Engine) -> Iterator[SAConnection]:
    """One transaction for a batch; any database failure becomes a `DatabaseError`."""
    try:
        with engine.begin() as conn:
            yield conn
    except sa.exc.SQLAlchemyError as exc:
        raise errors.classify(exc) from None


def already_applied(conn: SAConnection, writeback_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(writeback_ids), 500):
        chunk = list(writeback_ids[start : start + 500])
        query = sa.select(applied.c.WRITEBACK_ID).where(applied.c.WRITEBACK_ID.in_(chunk))
        found.update(conn.scalars(query))
    return found


def existing_customers(conn: SAConnection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        query = sa.select(customer.c.MASTER_CUSTOMER_ID).where(customer.c.MASTER_CUSTOMER_ID.in_(chunk)).distinct()
        found.update(conn.scalars(query))
    return found


def mark_applied(conn: SAConnection, writeback_id: str, customer_id: str, code: str | None, now: datetime) -> None:
    conn.execute(
        applied.insert(),
        {"WRITEBACK_ID": writeback_id, "MASTER_CUSTOMER_ID": customer_id, "RESULT_CODE": code, "APPLIED_ON": now},
    )


def _option(customer_id: str, code: str) -> sa.ColumnElement[bool]:
    c = cus_opt_in.c
    return sa.and_(
        c.MASTER_CUSTOMER_ID == customer_id,
        c.SUB_CUSTOMER_ID == 0,
        c.OPTION_TYPE_CODE == "INTEREST_AREA",
        c.OPTION_SHORT_NAME == code,
        c.OPTION_SHORT_SUBNAME == "",
    )


def open_periods(conn: SAConnection, customer_id: str, code: str) -> list[tuple[int, datetime]]:
    """(id, begin) of the customer's open periods for an interest area."""
    c = cus_opt_in.c
    query = sa.select(c.CUS_OPT_IN_ID, c.BEGIN_DATE).where(_option(customer_id, code), c.END_DATE.is_(None))
    return [(row[0], row[1]) for row in conn.execute(query.order_by(c.BEGIN_DATE))]


def has_had_period(conn: SAConnection, customer_id: str, code: str) -> bool:
    query = sa.select(cus_opt_in.c.CUS_OPT_IN_ID).where(_option(customer_id, code)).limit(1)
    return conn.execute(query).first() is not None


def end_period(conn: SAConnection, period_id: int, end: datetime, reason: str | None, by: str, now: datetime) -> None:
    c = cus_opt_in.c
    conn.execute(
        sa.update(cus_opt_in)
        .where(c.CUS_OPT_IN_ID == period_id, c.END_DATE.is_(None))
        .values(END_DATE=end, OPT_OUT_REASON_CODE=reason, MODIFIED_BY=by, MODIFIED_ON=now)
    )


def open_period(conn: SAConnection, customer_id: str, code: str, begin: datetime, by: str, now: datetime) -> None:
    conn.execute(
        cus_opt_in.insert(),
        {
            "MASTER_CUSTOMER_ID": customer_id, "SUB_CUSTOMER_ID": 0, "OPTION_TYPE_CODE": "INTEREST_AREA",
            "OPTION_SHORT_NAME": code, "OPTION_SHORT_SUBNAME": "", "BEGIN_DATE": begin,
            "ADDED_BY": by, "ADDED_ON": now,
        },
    )  # fmt: skip


def add_activity(
    conn: SAConnection, customer_id: str, code: str, date: datetime, text: str, by: str, now: datetime
) -> None:
    conn.execute(
        cus_activity.insert(),
        {
            "MASTER_CUSTOMER_ID": customer_id, "SUB_CUSTOMER_ID": 0, "ACTIVITY_CODE": code,
            "ACTIVITY_DATE": date, "ACTIVITY_TEXT": text, "ADDED_BY": by, "ADDED_ON": now,
        },
    )  # fmt: skip
