"""Personify's tables as the tests create them: a real database standing in for a Personify site.

The adapter never creates these (production has them); tests build them here, on SQLite and
PostgreSQL, with foreign keys so the database itself refuses an unknown customer or code. The
DDL the adapter expects, with SQL Server types, is in `writeback.adapters.personify`'s module doc.

Names are unquoted upper case, as Personify's are. Tables are declared without a schema and put
in `dbo` through `schema_translate_map` where the dialect has schemas (PostgreSQL: `CREATE SCHEMA
dbo`; SQLite: none), exactly as the adapter addresses them.

Application codes: Personify keeps every code list in one table keyed by (subsystem, type, code).
A foreign key from a child column to that table needs the subsystem and type on the child row,
so the child tables carry `*_CODE_SUBSYSTEM` / `*_CODE_TYPE` columns with fixed server defaults
that the adapter never writes (a fixture device: Personify enforces its codes in the application).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

SCHEMA = "dbo"
SUBSYSTEM = "CUS"
INTEREST_AREA_TYPE = "OPT_IN_INTEREST_AREA"
ACTIVITY_TYPE = "ACTIVITY"
OPT_OUT_REASON_TYPE = "OPT_OUT_REASON"

metadata = sa.MetaData()

customer = sa.Table(
    "CUSTOMER",
    metadata,
    sa.Column("MASTER_CUSTOMER_ID", sa.String(24), primary_key=True),
    sa.Column("SUB_CUSTOMER_ID", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("LABEL_NAME", sa.String(150)),
    sa.Column("PRIMARY_EMAIL_ADDRESS", sa.String(100)),
)

app_code = sa.Table(
    "APP_CODE",
    metadata,
    sa.Column("SUBSYSTEM", sa.String(24), primary_key=True),
    sa.Column("TYPE", sa.String(24), primary_key=True),
    sa.Column("CODE", sa.String(24), primary_key=True),
    sa.Column("DESCR", sa.String(60), nullable=False),
    sa.Column("ACTIVE_FLAG", sa.String(1), nullable=False, server_default="Y"),
)


def _code_columns(prefix: str, code_type: str) -> list[sa.Column[Any]]:
    return [
        sa.Column(f"{prefix}_CODE_SUBSYSTEM", sa.String(24), nullable=False, server_default=SUBSYSTEM),
        sa.Column(f"{prefix}_CODE_TYPE", sa.String(24), nullable=False, server_default=code_type),
    ]


def _code_fk(prefix: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [f"{prefix}_CODE_SUBSYSTEM", f"{prefix}_CODE_TYPE", column],
        ["APP_CODE.SUBSYSTEM", "APP_CODE.TYPE", "APP_CODE.CODE"],
    )


def _customer_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID"], ["CUSTOMER.MASTER_CUSTOMER_ID", "CUSTOMER.SUB_CUSTOMER_ID"]
    )

cus_opt_in = sa.Table(
    "CUS_OPT_IN",
    metadata,
    sa.Column("CUS_OPT_IN_ID", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("MASTER_CUSTOMER_ID", sa.String(24), nullable=False),
    sa.Column("SUB_CUSTOMER_ID", sa.Integer, nullable=False),
    sa.Column("OPTION_TYPE_CODE", sa.String(24), nullable=False),
    sa.Column("OPTION_SHORT_NAME", sa.String(24), nullable=False),
    sa.Column("OPTION_SHORT_SUBNAME", sa.String(24), nullable=False, server_default=""),
    sa.Column("BEGIN_DATE", sa.DateTime, nullable=False),
    sa.Column("END_DATE", sa.DateTime),
    sa.Column("OPT_OUT_REASON_CODE", sa.String(24)),
    sa.Column("ADDED_BY", sa.String(30), nullable=False),
    sa.Column("ADDED_ON", sa.DateTime, nullable=False),
    sa.Column("MODIFIED_BY", sa.String(30)),
    sa.Column("MODIFIED_ON", sa.DateTime),
    *_code_columns("OPTION", INTEREST_AREA_TYPE),
    *_code_columns("OPT_OUT_REASON", OPT_OUT_REASON_TYPE),
    _customer_fk(),
    _code_fk("OPTION", "OPTION_SHORT_NAME"),
    _code_fk("OPT_OUT_REASON", "OPT_OUT_REASON_CODE"),
    sa.UniqueConstraint(
        "MASTER_CUSTOMER_ID", "SUB_CUSTOMER_ID", "OPTION_TYPE_CODE", "OPTION_SHORT_NAME",
        "OPTION_SHORT_SUBNAME", "BEGIN_DATE",
    ),  # fmt: skip
)

cus_activity = sa.Table(
    "CUS_ACTIVITY",
    metadata,
    sa.Column("CUS_ACTIVITY_ID", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("MASTER_CUSTOMER_ID", sa.String(24), nullable=False),
    sa.Column("SUB_CUSTOMER_ID", sa.Integer, nullable=False),
    sa.Column("ACTIVITY_CODE", sa.String(24), nullable=False),
    sa.Column("ACTIVITY_DATE", sa.DateTime, nullable=False),
    sa.Column("ACTIVITY_TEXT", sa.String(400), nullable=False),
    sa.Column("ADDED_BY", sa.String(30), nullable=False),
    sa.Column("ADDED_ON", sa.DateTime, nullable=False),
    *_code_columns("ACTIVITY", ACTIVITY_TYPE),
    _customer_fk(),
    _code_fk("ACTIVITY", "ACTIVITY_CODE"),
)


def schema_of(engine: sa.Engine) -> str | None:
    """`dbo` where the dialect has schemas, else none (SQLite)."""
    return None if engine.dialect.name == "sqlite" else SCHEMA


def create(url: str) -> sa.Engine:
    """Creates Personify's tables in a fresh database and returns an engine addressing them."""
    engine = sa.create_engine(url)
    schema = schema_of(engine)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA foreign_keys=ON"))
    with engine.begin() as conn:
        if schema is not None:
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        metadata.create_all(conn.execution_options(schema_translate_map={None: schema}))
    return engine.execution_options(schema_translate_map={None: schema})


def add_customer(engine: sa.Engine, master_customer_id: str, name: str = "", sub_customer_id: int = 0) -> None:
    with engine.begin() as conn:
        conn.execute(
            customer.insert(),
            {"MASTER_CUSTOMER_ID": master_customer_id, "SUB_CUSTOMER_ID": sub_customer_id, "LABEL_NAME": name},
        )


def add_codes(engine: sa.Engine, code_type: str, codes: Iterable[str]) -> None:
    with engine.begin() as conn:
        conn.execute(
            app_code.insert(),
            [{"SUBSYSTEM": SUBSYSTEM, "TYPE": code_type, "CODE": code, "DESCR": code.title()} for code in codes],
        )


def add_opt_in(engine: sa.Engine, master_customer_id: str, interest_area: str, begin: datetime) -> None:
    """An open interest-area period, as Personify staff would have entered it."""
    with engine.begin() as conn:
        conn.execute(
            cus_opt_in.insert(),
            {
                "MASTER_CUSTOMER_ID": master_customer_id, "SUB_CUSTOMER_ID": 0,
                "OPTION_TYPE_CODE": "INTEREST_AREA", "OPTION_SHORT_NAME": interest_area,
                "OPTION_SHORT_SUBNAME": "", "BEGIN_DATE": begin, "ADDED_BY": "STAFF", "ADDED_ON": begin,
            },
        )  # fmt: skip


_OPT_IN_COLUMNS = ("MASTER_CUSTOMER_ID", "OPTION_TYPE_CODE", "OPTION_SHORT_NAME", "BEGIN_DATE", "END_DATE",
                   "OPT_OUT_REASON_CODE")  # fmt: skip
_ACTIVITY_COLUMNS = ("MASTER_CUSTOMER_ID", "ACTIVITY_CODE", "ACTIVITY_DATE", "ACTIVITY_TEXT")


def opt_ins(engine: sa.Engine) -> list[tuple[Any, ...]]:
    """Every CUS_OPT_IN row's meaningful columns, in insertion order."""
    columns = [cus_opt_in.c[name] for name in _OPT_IN_COLUMNS]
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(*columns).order_by(cus_opt_in.c.CUS_OPT_IN_ID))]


def activities(engine: sa.Engine) -> list[tuple[Any, ...]]:
    """Every CUS_ACTIVITY row's meaningful columns, in insertion order."""
    columns = [cus_activity.c[name] for name in _ACTIVITY_COLUMNS]
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(*columns).order_by(cus_activity.c.CUS_ACTIVITY_ID))]
