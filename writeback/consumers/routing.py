"""Which events each CRM connection writes back, and on which schedule class.

An event that a connection does not take is dropped for that connection with a reason, and
counted: a missing writeback should be explainable from metrics, not a mystery.
"""

from __future__ import annotations

from dataclasses import dataclass

from writeback import taxonomy
from writeback.events import (
    ActivityEvent,
    CommunityListEvent,
    Source,
    SubscriberAction,
    SubscriberEvent,
)
from writeback.settings import (
    MAILING_ACTIVITY_BY_KIND,
    Connection,
    ConnectionKind,
    MailingActivity,
)
from writeback.writebacks import WritebackClass

Event = SubscriberEvent | ActivityEvent | CommunityListEvent

_BOUNCES = frozenset(
    {"SoftBounce", "HardBounce", "UserNotFound", "MailboxFull", "TemporarilyUnavailable",
     "BadDomain", "SendFailed"}
)  # fmt: skip
_MAILING_ACTIVITY = {
    "Delivered": MailingActivity.SENT,
    "Opened": MailingActivity.OPENED,
    "Clicked": MailingActivity.CLICK,
    "Blocked": MailingActivity.BLOCK,
    "SocialShare": MailingActivity.SOCIAL_SHARING,
    **{subcode: MailingActivity.BOUNCE for subcode in _BOUNCES},
}
_STATUS_ACTIONS = frozenset(
    {SubscriberAction.UNSUBSCRIBE, SubscriberAction.RESUBSCRIBE, SubscriberAction.BAD_EMAIL}
)
_PERSONIFY_ACTIONS = frozenset(
    {SubscriberAction.UNSUBSCRIBE, SubscriberAction.RESUBSCRIBE, SubscriberAction.SUBSCRIBE}
)


@dataclass(frozen=True, slots=True)
class Route:
    wb_class: WritebackClass | None
    reason: str | None = None  # why the connection does not take the event

    @property
    def taken(self) -> bool:
        return self.wb_class is not None


def _drop(reason: str) -> Route:
    return Route(None, reason)


def mailing_activity(event: ActivityEvent) -> MailingActivity | None:
    """The seed-000 mailing-activity type of an event, if it is one."""
    return _MAILING_ACTIVITY.get(str(event.subcode))


def route(event: Event, connection: Connection) -> Route:
    if not connection.enabled:
        return _drop("connection_disabled")
    if connection.kind is ConnectionKind.COMMUNITY:
        if isinstance(event, CommunityListEvent):
            return Route(WritebackClass.ACTIVITY)
        return _drop("not_for_kind")
    if isinstance(event, CommunityListEvent):
        return _drop("not_for_kind")
    if connection.kind is ConnectionKind.TRACKING:
        return _route_tracking(event, connection)
    if isinstance(event, SubscriberEvent):
        return _route_subscriber(event, connection)
    return _route_activity(event, connection)


def _route_tracking(event: SubscriberEvent | ActivityEvent, connection: Connection) -> Route:
    """001: every code/subcode pair goes to the integrated product, once daily."""
    if not connection.tracking_enabled:
        return _drop("tracking_disabled")
    if taxonomy.tracking_pair(event) is None:
        return _drop("no_tracking_pair")
    if isinstance(event, SubscriberEvent):
        return Route(WritebackClass.SUBSCRIBER)
    return Route(WritebackClass.ACTIVITY)


def _route_subscriber(event: SubscriberEvent, connection: Connection) -> Route:
    if event.source == Source.CRM_SYNC:
        return _drop("originated_in_crm")
    wanted = _PERSONIFY_ACTIONS if connection.kind is ConnectionKind.PERSONIFY else _STATUS_ACTIONS
    if event.action not in wanted:
        return _drop("not_for_kind")
    return Route(WritebackClass.SUBSCRIBER)


def _route_activity(event: ActivityEvent, connection: Connection) -> Route:
    if connection.kind is ConnectionKind.PERSONIFY:
        return _drop("not_for_kind")
    activity = mailing_activity(event)
    # A type the kind does not offer at all (002: Salesforce has Sent and Opened only) is not
    # "disabled": no setting could turn it on.
    if activity is None or activity not in MAILING_ACTIVITY_BY_KIND.get(connection.kind, ()):
        return _drop("not_for_kind")
    if activity not in connection.mailing_activity():
        return _drop("activity_type_disabled")
    return Route(WritebackClass.ACTIVITY)


def route_key(event: Event) -> tuple[object, ...]:
    """Everything about an event that `route` reads: events with equal keys route alike."""
    if isinstance(event, ActivityEvent):
        return ("activity", event.code, event.subcode)
    if isinstance(event, SubscriberEvent):
        return ("subscriber", event.action, event.source == Source.CRM_SYNC)
    return ("community",)


class Routes:
    """`route`, remembered per (connection, route key) for one settings snapshot.

    Ingest routes every event to every connection of its account, tens of thousands a second,
    while a handful of keys cover all of them. Make a new one when the settings change.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, tuple[object, ...]], Route] = {}

    def route(self, event: Event, connection: Connection) -> Route:
        key = (connection.id, route_key(event))
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = route(event, connection)
        return found
