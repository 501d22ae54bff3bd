"""Personify (seed 004): subscription changes (unsubscribe, subscribe, resubscribe, by scope) as
interest-area opt-ins (`dbo.CUS_OPT_IN`) and/or activity records (`dbo.CUS_ACTIVITY`), written
straight to Personify's SQL Server database through SQLAlchemy Core, once daily.

Files: config.py (the connection's `crm` settings), client.py (engine, tables, statements),
errors.py (database errors → `ErrorKind`), mapping.py (seed 004's rules as a plan), adapter.py
(one transaction per batch, a savepoint per writeback, idempotency).

Seed 004 → rows. Choices where public documentation is silent are marked (choice).
- Who: `recipient.integration_id` is the Master Customer ID; SUB_CUSTOMER_ID is 0 (choice: the
  customer record itself). One that matches no CUSTOMER row fails `UNKNOWN_CUSTOMER` and writes
  nothing, neither opt-in nor activity. No integration id fails `NO_CUSTOMER_ID`.
- `personify_mode` (default `activity`, the one mode needing nothing else (choice)):
  `activity` writes a CUS_ACTIVITY row, `opt_in` changes CUS_OPT_IN, `both` does both, in one
  savepoint: both or neither.
- Opt-in (Manage Unsubscribe, `manage_unsubscribe`, required for `opt_in` and `both`): a group
  category, group or message category maps by its scope id to an interest-area code
  (OPTION_TYPE_CODE "INTEREST_AREA", OPTION_SHORT_NAME = code, OPTION_SHORT_SUBNAME ''). A scope
  the mapping lacks fails `UNMAPPED_GROUP` and writes nothing (also no activity row in `both`).
  All mail (or an event without scope) stands for every mapped interest area (choice).
  Unsubscribe: the open period(s) get END_DATE = the unsubscribe's time (and
  OPT_OUT_REASON_CODE = `opt_out_reason_code`, NULL by default); rows are never deleted. A period
  that began after the unsubscribe is left open (a late replay). Nothing open: nothing to end.
  Subscribe / resubscribe: a new row (a new period) with BEGIN_DATE = the event's time, unless
  one is open; for all mail only for interest areas the customer has had a period of (choice:
  it never adds interest areas). A writeback that changes nothing completes counted
  `NOTHING_TO_WRITE`.
- Activity: ACTIVITY_CODE `unsubscribe_activity_code` ("UNSUBSCRIBE") or
  `subscribe_activity_code` ("SUBSCRIBE") (choice: codes of the site's ACTIVITY list),
  ACTIVITY_DATE = the event's time, ACTIVITY_TEXT e.g. `Unsubscribed from group "Advocacy" (g-12)
  via mailing link; reason: too many emails` / `Resubscribed to all mail via subscription page`.
- Dates are naive local times in `time_zone` (default: the account's), to the millisecond.
  ADDED_BY / MODIFIED_BY = `added_by` ("WRITEBACK"), ADDED_ON / MODIFIED_ON = now, local.
- "Subscribe and Unsubscribe tracking" off (`tracking_enabled = false`): nothing is routed.
  Changes that came from Personify (source CRM_SYNC) are not routed, and a replayed one is
  counted `ORIGINATED_IN_CRM`, never written back.
- A code the database refuses (foreign key to its application codes) fails `UNKNOWN_CODE`.

Idempotency: `WRITEBACK_APPLIED` (owned by the adapter, created when missing) holds one row per
applied writeback id, inserted in the writeback's own savepoint: a replayed batch, or one
retried after its commit's answer was lost, changes nothing.

Failures: unreachable → OUTAGE; lock timeout / deadlock / SQLite locked → CONTENTION; refused
login, missing secret, missing table or permission → CREDENTIALS; the batch's transaction is rolled
back and every writeback retried. A refused row fails alone (its savepoint rolled back).

Connection: `database_url` without credentials, e.g.
`mssql+pyodbc://sql01.example.org:1433/PERSONIFY?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes`,
with `username` and `password = {env = "..."}`; or the whole URL by reference. Tables are in
`db_schema` ("dbo"), except on SQLite. Portable SQL only (plain INSERT/UPDATE/SELECT, SAVEPOINT).

The DDL the adapter expects (SQL Server, as production has it; only these columns are read or
written, others may exist with defaults; the tests build the same with the development tools):

```sql
CREATE TABLE dbo.CUSTOMER (MASTER_CUSTOMER_ID NVARCHAR(24) NOT NULL, SUB_CUSTOMER_ID INT NOT NULL,
  ..., PRIMARY KEY (MASTER_CUSTOMER_ID, SUB_CUSTOMER_ID));
CREATE TABLE dbo.APP_CODE (SUBSYSTEM NVARCHAR(24) NOT NULL, TYPE NVARCHAR(24) NOT NULL,
  CODE NVARCHAR(24) NOT NULL, DESCR NVARCHAR(60) NOT NULL, ACTIVE_FLAG NCHAR(1) NOT NULL DEFAULT 'Y',
  PRIMARY KEY (SUBSYSTEM, TYPE, CODE));  -- CUS / OPT_IN_INTEREST_AREA, ACTIVITY, OPT_OUT_REASON
CREATE TABLE dbo.CUS_OPT_IN (CUS_OPT_IN_ID INT IDENTITY PRIMARY KEY,
  MASTER_CUSTOMER_ID NVARCHAR(24) NOT NULL, SUB_CUSTOMER_ID INT NOT NULL,
  OPTION_TYPE_CODE NVARCHAR(24) NOT NULL, OPTION_SHORT_NAME NVARCHAR(24) NOT NULL,
  OPTION_SHORT_SUBNAME NVARCHAR(24) NOT NULL DEFAULT '', BEGIN_DATE DATETIME2(3) NOT NULL,
  END_DATE DATETIME2(3) NULL, OPT_OUT_REASON_CODE NVARCHAR(24) NULL,
  ADDED_BY NVARCHAR(30) NOT NULL, ADDED_ON DATETIME2(3) NOT NULL,
  MODIFIED_BY NVARCHAR(30) NULL, MODIFIED_ON DATETIME2(3) NULL,
  FOREIGN KEY (MASTER_CUSTOMER_ID, SUB_CUSTOMER_ID) REFERENCES dbo.CUSTOMER);
CREATE TABLE dbo.CUS_ACTIVITY (CUS_ACTIVITY_ID INT IDENTITY PRIMARY KEY,
  MASTER_CUSTOMER_ID NVARCHAR(24) NOT NULL, SUB_CUSTOMER_ID INT NOT NULL,
  ACTIVITY_CODE NVARCHAR(24) NOT NULL, ACTIVITY_DATE DATETIME2(3) NOT NULL,
  ACTIVITY_TEXT NVARCHAR(400) NOT NULL, ADDED_BY NVARCHAR(30) NOT NULL, ADDED_ON DATETIME2(3) NOT NULL,
  FOREIGN KEY (MASTER_CUSTOMER_ID, SUB_CUSTOMER_ID) REFERENCES dbo.CUSTOMER);
CREATE TABLE dbo.WRITEBACK_APPLIED (WRITEBACK_ID NVARCHAR(64) PRIMARY KEY,
  MASTER_CUSTOMER_ID NVARCHAR(24) NOT NULL, RESULT_CODE NVARCHAR(40) NULL,
  APPLIED_ON DATETIME2(3) NOT NULL);  -- the adapter's own
```
Codes (OPTION_SHORT_NAME, ACTIVITY_CODE, OPT_OUT_REASON_CODE) must be among APP_CODE's codes of
their type; the test schema enforces it with foreign keys.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from writeback import schedules
from writeback.adapters.base import Kind, Route, drop, route_outbound
from writeback.contract.events import ActivityEvent, Event, SubscriberAction
from writeback.ledger.rows import WritebackClass

from .adapter import PersonifyAdapter
from .config import Config, ManageUnsubscribe, Mode

if TYPE_CHECKING:
    from writeback.settings import Account, Connection

__all__ = ["KIND", "Config", "ManageUnsubscribe", "Mode", "PersonifyAdapter"]

_ACTIONS = frozenset({SubscriberAction.UNSUBSCRIBE, SubscriberAction.RESUBSCRIBE, SubscriberAction.SUBSCRIBE})


def _route(event: Event, connection: Connection) -> Route:
    """Subscription changes that did not come from Personify, while tracking is enabled."""
    if isinstance(event, ActivityEvent):
        return drop("not_for_kind")
    if not connection.config.tracking_enabled:
        return drop("tracking_disabled")
    return route_outbound(event, connection, _ACTIONS)


def _schedules(tz: str) -> dict[WritebackClass, schedules.Schedule]:
    once = schedules.daily_default(tz)  # 004: once daily
    return {WritebackClass.SUBSCRIBER: once, WritebackClass.ACTIVITY: once}


def _open(account: Account, connection: Connection) -> PersonifyAdapter:
    return PersonifyAdapter(connection.config, time_zone=account.time_zone)


KIND = Kind(
    name="personify",
    route=_route,
    schedules=_schedules,
    config=Config,
    open=_open,
    subscriber_cadence=(timedelta(days=1), "004"),
)
