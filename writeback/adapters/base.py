"""The interface every CRM kind implements, and the closed set of error kinds it maps to.

A kind lives in one package, `writeback/adapters/<name>/`, and declares a `Kind`; `registry.py`
maps names to kinds. Settings, routing, ingest, retries and the flusher know a kind only through
this module, never its CRM's names or error codes: each adapter maps its CRM's errors once, at
its boundary, to an `ErrorKind` (the way httpx maps transport errors in `_exceptions.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

from writeback.contract.events import (
    ActivityEvent,
    CommunityListEvent,
    Event,
    Source,
    SubscriberAction,
    SubscriberEvent,
)
from writeback.ledger.rows import MailingActivity, WritebackClass

if TYPE_CHECKING:
    from writeback.schedules import Schedule
    from writeback.settings import Account, Connection

ORDER_BLOCKED = "ORDER_BLOCKED"  # held back: an earlier writeback of the recipient did not complete


class ErrorKind(StrEnum):
    """Why a writeback did not complete: what the retry policy, the breaker and metrics read."""

    OUTAGE = "outage"  # transport errors, timeouts, 5xx, unreadable answers: the CRM is not there
    THROTTLED = "throttled"  # 429, API limits: the CRM asks us to slow down (Retry-After)
    CREDENTIALS = "credentials"  # refused or expired credentials: an operator must act
    CONTENTION = "contention"  # per record and passing: row locks, rolled-back neighbours
    ORDER = "order"  # waits for an earlier writeback of the same recipient
    REJECTED = "rejected"  # the CRM (or the adapter's own check) refused the record: its code says why


class Disposition(StrEnum):
    """What an adapter says happened to one writeback."""

    COMPLETED = "completed"
    RETRY = "retry"  # transient: the row stays pending and is tried again later
    FAILED = "failed"  # permanent: the row fails and goes to the dead-letter topic


@dataclass(frozen=True, slots=True)
class Writeback:
    """One event bound for one CRM connection, as an adapter receives it: the event is the
    contract's model, decoded once when the row was claimed."""

    id: str
    account_id: str
    connection_id: str
    wb_class: WritebackClass
    recipient_key: str
    occurred_at: datetime
    event: Event


@dataclass(frozen=True, slots=True)
class Outcome:
    writeback_id: str
    disposition: Disposition
    error_code: str | None = None  # the CRM's own code (or the adapter's), shown and filterable
    error_message: str | None = None
    retry_after: float | None = None  # seconds, when the CRM said so (Retry-After)
    crm_ids: tuple[str, ...] = field(default=())  # ids the CRM gave what we wrote
    kind: ErrorKind | None = None  # None when completed

    @classmethod
    def completed(cls, writeback_id: str, *crm_ids: str) -> Outcome:
        return cls(writeback_id, Disposition.COMPLETED, crm_ids=crm_ids)

    @classmethod
    def counted(cls, writeback_id: str, code: str, message: str) -> Outcome:
        """Completed without a CRM write (nothing to write for it): in the list, never retried."""
        return cls(writeback_id, Disposition.COMPLETED, code, message)

    @classmethod
    def failed(cls, writeback_id: str, code: str, message: str) -> Outcome:
        return cls(writeback_id, Disposition.FAILED, code, message, kind=ErrorKind.REJECTED)

    @classmethod
    def retry(
        cls,
        writeback_id: str,
        code: str,
        message: str,
        retry_after: float | None = None,
        kind: ErrorKind = ErrorKind.OUTAGE,
    ) -> Outcome:
        return cls(writeback_id, Disposition.RETRY, code, message, retry_after, kind=kind)

    @classmethod
    def blocked(cls, writeback_id: str) -> Outcome:
        return cls.retry(
            writeback_id, ORDER_BLOCKED, "an earlier writeback for this recipient has not completed", kind=ErrorKind.ORDER
        )


class Adapter(Protocol):
    """A live connection to one CRM: one Outcome per writeback, in input order."""

    max_batch: int

    def write(self, batch: Sequence[Writeback]) -> list[Outcome]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Route:
    """Whether a connection takes an event, under which class, or why not (counted)."""

    wb_class: WritebackClass | None
    reason: str | None = None

    @property
    def taken(self) -> bool:
        return self.wb_class is not None


def drop(reason: str) -> Route:
    return Route(None, reason)


class NoConfig(BaseModel):
    """The `crm` settings of a kind that needs none."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Kind:
    """What a CRM kind declares: everything the rest of the service needs to know about it."""

    name: str
    route: Callable[[Event, Connection], Route]  # which events it takes; the connection is enabled
    schedules: Callable[[str], dict[WritebackClass, Schedule]]  # defaults, in the account's zone
    config: type[BaseModel] = NoConfig  # validates the connection's `crm` settings (errors name the field)
    open: Callable[[Account, Connection], Adapter] | None = None  # None: nothing writes to it yet
    mailing_activity: frozenset[MailingActivity] = frozenset()  # the optional types it offers
    mailing_activity_on: frozenset[MailingActivity] | None = None  # on by default; None: all offered
    subscriber_cadence: tuple[timedelta, str] | None = None  # slowest subscriber schedule, and the seed
    origin_rule: bool = False  # keeps its own opt-out, which a marketing resubscribe cannot undo
    subscriber_state: bool = False  # keeps the platform's subscriber status without the origin rule


@dataclass(frozen=True)
class Product:
    """A CRM as the integrated product of a tracking connection (seed 001): its settings and
    how to open an adapter that writes every code/subcode pair as an activity record."""

    config: type[BaseModel]
    open: Callable[[Account, Any], Adapter]


# Route rules the kinds share -----------------------------------------------------------------

STATUS_ACTIONS = frozenset({SubscriberAction.UNSUBSCRIBE, SubscriberAction.RESUBSCRIBE, SubscriberAction.BAD_EMAIL})
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


def mailing_activity(event: ActivityEvent) -> MailingActivity | None:
    """The seed-000 mailing-activity type of an event, if it is one."""
    return _MAILING_ACTIVITY.get(str(event.subcode))


def excluded_mailing(event: Event, connection: Connection) -> bool:
    """Whether the event is activity of a mailing the connection excludes from writebacks (000:
    optional writebacks "can be disabled if they are not needed for a particular mailing").
    Subscriber status carries no mailing and is never excluded: it cannot be turned off."""
    excluded = connection.writebacks.excluded_mailings
    return bool(excluded) and isinstance(event, ActivityEvent) and event.mailing is not None and (
        event.mailing.mailing_id in excluded
    )


def route_outbound(
    event: Event, connection: Connection, actions: frozenset[SubscriberAction] = STATUS_ACTIONS
) -> Route:
    """The rule of a CRM that receives subscriber status and mailing activity: status changes
    that did not come from the CRM itself, and the mailing-activity types it offers and has on,
    unless the mailing is excluded."""
    if isinstance(event, CommunityListEvent):
        return drop("not_for_kind")
    if isinstance(event, SubscriberEvent):
        if event.source == Source.CRM_SYNC:
            return drop("originated_in_crm")
        if event.action not in actions:
            return drop("not_for_kind")
        return Route(WritebackClass.SUBSCRIBER)
    activity = mailing_activity(event)
    # a type the kind does not offer at all (002: Salesforce has Sent and Opened only) is not
    # "disabled": no setting could turn it on
    if activity is None or activity not in connection.offered_mailing_activity():
        return drop("not_for_kind")
    if activity not in connection.mailing_activity():
        return drop("activity_type_disabled")
    if excluded_mailing(event, connection):
        return drop("mailing_excluded")
    return Route(WritebackClass.ACTIVITY)
