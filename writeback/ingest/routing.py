"""Which events each CRM connection writes back, and on which schedule class.

Each kind declares its own rule (`writeback.adapters`); this module adds what is the same for
every kind. An event that a connection does not take is dropped for that connection with a
reason, and counted: a missing writeback should be explainable from metrics, not a mystery.
"""

from __future__ import annotations

from writeback.adapters.base import Route, drop, excluded_mailing
from writeback.contract.events import (
    ActivityEvent,
    CommunityListEvent,
    Event,
    Source,
    SubscriberEvent,
)
from writeback.settings import Connection

__all__ = ["Event", "Route", "Routes", "route", "route_key"]


def route(event: Event, connection: Connection) -> Route:
    if not connection.enabled:
        return drop("connection_disabled")
    return connection.kind_of().route(event, connection)


def route_key(event: Event, connection: Connection) -> tuple[object, ...]:
    """Everything about an event that a kind's rule reads for this connection: events with equal
    keys route alike. Whether the mailing is excluded, not its id, so the keys stay a handful
    however many mailings go by."""
    if isinstance(event, ActivityEvent):
        return ("activity", event.code, event.subcode, excluded_mailing(event, connection))
    if isinstance(event, SubscriberEvent):
        return ("subscriber", event.action, event.source == Source.CRM_SYNC)
    assert isinstance(event, CommunityListEvent)
    return ("community",)


class Routes:
    """`route`, remembered per (connection, route key) for one settings snapshot.

    Ingest routes every event to every connection of its account, tens of thousands a second,
    while a handful of keys cover all of them. Make a new one when the settings change.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, tuple[object, ...]], Route] = {}

    def route(self, event: Event, connection: Connection) -> Route:
        key = (connection.id, route_key(event, connection))
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = route(event, connection)
        return found
