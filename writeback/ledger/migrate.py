"""Bring a ledger database to the newest schema with Alembic, from code (no alembic.ini).

Several instances may start at once on one database: PostgreSQL migrations take an advisory
lock; on SQLite the loser of a race sees its transaction (DDL included) rolled back and tries
again, finding the schema already at head.
"""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x77726974  # "writ": the advisory lock every instance's migration takes


def alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: sa.Engine, attempts: int = 5) -> None:
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
                command.upgrade(alembic_config(connection), "head")
            return
        except sa.exc.OperationalError:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)  # another instance was migrating the same SQLite file
