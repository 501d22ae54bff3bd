"""Salesforce (seed 002): unsubscribe and resubscribe notes, Email Opt Out, Sent and Opened as
Tasks; and Salesforce as the integrated product of a tracking connection (seed 001).

Protocol: OAuth 2.0 client-credentials (token fetched lazily, renewed once on an expired
session), sObject Collections and SOQL over the REST API (`client.py`); what each writeback
becomes is in `mapping.py`, how a batch is written in `adapter.py`, the org's error codes in
`errors.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from writeback import schedules
from writeback.adapters.base import Kind, Product, Route, Writeback, route_outbound
from writeback.adapters.salesforce.adapter import SalesforceAdapter
from writeback.adapters.salesforce.config import Config
from writeback.adapters.salesforce.mapping import NOTE_MARKER, TASK_EXTERNAL_ID, id18
from writeback.contract import taxonomy
from writeback.contract.events import ActivityEvent, Event, SubscriberEvent
from writeback.ledger.rows import MailingActivity, WritebackClass

if TYPE_CHECKING:
    from writeback.settings import Account, Connection

__all__ = ["KIND", "NOTE_MARKER", "TASK_EXTERNAL_ID", "TRACKING", "Config", "SalesforceAdapter", "id18"]


def _route(event: Event, connection: Connection) -> Route:
    return route_outbound(event, connection)


def _schedules(_tz: str) -> dict[WritebackClass, schedules.Schedule]:
    # 002: subscriber status is polled regularly; mailing activity defaults to Manual
    return {WritebackClass.SUBSCRIBER: schedules.SUBSCRIBER_STATUS_DEFAULT, WritebackClass.ACTIVITY: schedules.ManualSchedule()}


def _open(account: Account, connection: Connection) -> SalesforceAdapter:
    return SalesforceAdapter(connection.config, time_zone=account.time_zone)


def _tracking_pair(wb: Writeback) -> tuple[str, str] | None:
    return taxonomy.tracking_pair(wb.event) if isinstance(wb.event, ActivityEvent | SubscriberEvent) else None


def _open_tracking(account: Account, config: Config) -> SalesforceAdapter:
    return SalesforceAdapter(config, time_zone=account.time_zone, tracking_pair=_tracking_pair)


TRACKING = Product(config=Config, open=_open_tracking)
"""Salesforce as a tracking connection's integrated product: a Task per event, Activity Group =
code, Activity = subcode (seed 001)."""


KIND = Kind(
    name="salesforce",
    route=_route,
    schedules=_schedules,
    config=Config,
    open=_open,
    mailing_activity=frozenset({MailingActivity.SENT, MailingActivity.OPENED}),
    mailing_activity_on=frozenset({MailingActivity.SENT}),  # 002: Sent checked by default
    origin_rule=True,
)
