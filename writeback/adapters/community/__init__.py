"""Community lists (seed 003): the connection that reads from its CRM instead of writing to it.
Membership changes arrive as community list events; no sync job or target groups yet, so their
rows wait, pending."""

from __future__ import annotations

from typing import TYPE_CHECKING

from writeback import schedules
from writeback.adapters.base import Kind, Route, drop
from writeback.contract.events import CommunityListEvent, Event
from writeback.ledger.rows import WritebackClass

if TYPE_CHECKING:
    from writeback.settings import Connection


def _route(event: Event, _connection: Connection) -> Route:
    return Route(WritebackClass.ACTIVITY) if isinstance(event, CommunityListEvent) else drop("not_for_kind")


def _schedules(tz: str) -> dict[WritebackClass, schedules.Schedule]:
    return {WritebackClass.SUBSCRIBER: schedules.SUBSCRIBER_STATUS_DEFAULT, WritebackClass.ACTIVITY: schedules.daily_default(tz)}


KIND = Kind(name="community", route=_route, schedules=_schedules)
