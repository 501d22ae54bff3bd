"""netFORUM Enterprise (seed 000): subscriber status every ten minutes, and every mailing-activity
type, which can be switched off one by one. No adapter yet: rows wait, pending, until one exists."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from writeback import schedules
from writeback.adapters.base import Kind, Route, route_outbound
from writeback.events import Event
from writeback.writebacks import MailingActivity, WritebackClass

if TYPE_CHECKING:
    from writeback.settings import Connection


def _route(event: Event, connection: Connection) -> Route:
    return route_outbound(event, connection)


def _schedules(tz: str) -> dict[WritebackClass, schedules.Schedule]:
    return {WritebackClass.SUBSCRIBER: schedules.SUBSCRIBER_STATUS_DEFAULT, WritebackClass.ACTIVITY: schedules.daily_default(tz)}


KIND = Kind(
    name="netforum",
    route=_route,
    schedules=_schedules,
    mailing_activity=frozenset(MailingActivity),
    subscriber_cadence=(timedelta(minutes=10), "000"),
    origin_rule=True,
)
