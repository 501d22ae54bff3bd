"""Which events each CRM connection writes back, and on which schedule class.

Each kind declares its own rule (`writeback.adapters`); this module adds what is the same for
every kind. An event that a connection does not take is dropped for that connection with a
reason, and counted: a missing writeback should be explainable from metrics, not a mystery.
"""

from __future__ import annotations

from writeback.adapters.base import Route, drop
from writeback.contract.events import ActivityEvent, Event, Source, SubscriberEvent
from writeback.ingest.incoming import Incoming
from writeback.settings import Connection

__all__ = ["Event", "Route", "Routes", "route", "route_key"]


def route(event: Event, connection: Connection) -> Route:
    if not connection.enabled:
        return drop("connection_disabled")
    return connection.kind_of().route(event, connection)


def route_key(found: Incoming, connection: Connection) -> tuple[object, ...]:
    """Everything about an event that a kind's rule reads for this connection: events with equal
    keys route alike. Whether the mailing is excluded, not its id, so the keys stay a handful
    however many mailings go by. Read from the decoded data, so a remembered route needs no model."""
    data = found.data
    if found.model is ActivityEvent:
        excluded = connection.writebacks.excluded_mailings
        return ("activity", data.get("code"), data.get("subcode"), bool(excluded) and found.mailing_id in excluded)
    if found.model is SubscriberEvent:
        return ("subscriber", data.get("action"), data.get("source") == Source.CRM_SYNC)
    return ("community",)


class Routes:
    """`route`, remembered per (connection, route key) for one settings snapshot.

    Ingest routes every event to every connection of its account, tens of thousands a second,
    while a handful of keys cover all of them. Make a new one when the settings change. An
    event whose key is not remembered yet is routed by its model, so it is checked against the
    whole contract first (InvalidEvent if it breaks it, and nothing is remembered).
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, tuple[object, ...]], Route] = {}

    def route(self, found: Incoming, connection: Connection) -> Route:
        key = (connection.id, route_key(found, connection))
        decided = self._known.get(key)
        if decided is None:
            decided = self._known[key] = route(found.event(), connection)
        return decided
