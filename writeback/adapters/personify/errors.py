"""Database errors and the adapter's own codes, mapped once to the service's `ErrorKind`.

- A refused row (an IntegrityError: a foreign key to an unknown customer or code) is permanent and
  belongs to that record alone: it is rolled back to its savepoint and fails with a code saying
  what was unknown; its neighbours go on.
- An unreachable database, a dropped connection, a timeout: OUTAGE, the whole batch retries.
- A lock wait, a deadlock victim, a serialization failure, SQLite's "database is locked":
  CONTENTION, the whole batch retries (its transaction was rolled back, so nothing half-written).
- Refused login, a missing secret, a missing table or column or permission: CREDENTIALS, an
  operator must act; the rows wait.

Codes are read from the driver's SQLSTATE (PostgreSQL, ODBC) or error number (SQL Server) where
it has one, else from the message: the three backends word the same failure differently.
"""

from __future__ import annotations

import re

import sqlalchemy.exc as sa_exc

from writeback.adapters.base import ErrorKind

UNKNOWN_CUSTOMER = "UNKNOWN_CUSTOMER"  # no CUSTOMER row has the Master Customer ID
NO_CUSTOMER_ID = "NO_CUSTOMER_ID"  # the recipient carries no integration id (Master Customer ID)
UNMAPPED_GROUP = "UNMAPPED_GROUP"  # a scope Manage Unsubscribe does not map to an interest area
UNKNOWN_CODE = "UNKNOWN_CODE"  # the database refused an interest-area, activity or reason code
ROW_REFUSED = "ROW_REFUSED"  # any other constraint refused the row
ORIGINATED_IN_CRM = "ORIGINATED_IN_CRM"  # counted: Personify's own change, never written back
NOTHING_TO_WRITE = "NOTHING_TO_WRITE"  # counted: the opt-in is already as the event says
UNSUPPORTED_EVENT = "UNSUPPORTED_EVENT"
SECRET_UNAVAILABLE = "SECRET_UNAVAILABLE"
DATABASE_UNREACHABLE = "DATABASE_UNREACHABLE"
DATABASE_LOCKED = "DATABASE_LOCKED"
LOGIN_REFUSED = "LOGIN_REFUSED"
SCHEMA_MISMATCH = "SCHEMA_MISMATCH"  # a table, column or permission the adapter needs is missing


class DatabaseError(Exception):
    """A failure of the whole batch: `kind` is what the flusher reads."""

    def __init__(self, kind: ErrorKind, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.kind, self.code, self.message = kind, code, message


_LOCKED_STATES = frozenset({"40001", "40P01", "55P03", "57014", "HYT00"})
_LOGIN_STATES = frozenset({"28000", "28P01"})
_SCHEMA_STATES = frozenset({"42P01", "42703", "42501", "3F000", "42S02", "42S22"})
_LOCKED_NUMBERS = frozenset({1205, 1222})  # SQL Server: deadlock victim, lock request timeout
_LOGIN_NUMBERS = frozenset({18456})
_LOCKED_TEXT = re.compile(r"database is locked|deadlock|lock timeout|could not obtain lock|lock request", re.I)
_LOGIN_TEXT = re.compile(r"password authentication failed|login failed|authentication", re.I)
_SCHEMA_TEXT = re.compile(r"no such table|no such column|does not exist|invalid object name|permission", re.I)


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state is None and getattr(orig, "args", None) and isinstance(orig.args[0], str) and len(orig.args[0]) == 5:
        state = orig.args[0]  # pyodbc: ('42S02', '[42S02] [Microsoft]... (208)')
    return str(state) if state else None


def _number(exc: sa_exc.DBAPIError) -> int | None:
    match = re.search(r"\((\d{3,5})\)\s*(?:\(SQL\w+\))?$", str(exc.orig))
    return int(match.group(1)) if match else None


def classify(exc: sa_exc.SQLAlchemyError) -> DatabaseError:
    """The batch-level error for a database failure that is not one record's refusal."""
    text = str(getattr(exc, "orig", exc))
    if isinstance(exc, sa_exc.DBAPIError):
        state, number = _sqlstate(exc), _number(exc)
        if state in _LOCKED_STATES or number in _LOCKED_NUMBERS or _LOCKED_TEXT.search(text):
            return DatabaseError(ErrorKind.CONTENTION, DATABASE_LOCKED, scrub(text))
        if state in _LOGIN_STATES or number in _LOGIN_NUMBERS or _LOGIN_TEXT.search(text):
            return DatabaseError(ErrorKind.CREDENTIALS, LOGIN_REFUSED, scrub(text))
        if state in _SCHEMA_STATES or isinstance(exc, sa_exc.ProgrammingError) or _SCHEMA_TEXT.search(text):
            return DatabaseError(ErrorKind.CREDENTIALS, SCHEMA_MISMATCH, scrub(text))
    return DatabaseError(ErrorKind.OUTAGE, DATABASE_UNREACHABLE, scrub(text))


def scrub(message: str, limit: int = 300) -> str:
    """A driver message as outcomes may show it: one line, bounded (drivers quote whole SQL)."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
