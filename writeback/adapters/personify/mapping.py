"""Seed 004's rules as a plan: a typed subscriber event in, the CUS_OPT_IN change and/or the
CUS_ACTIVITY row to write out. Pure: no database, no clock (the adapter reads the open periods).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from writeback.contract.events import (
    Event,
    ScopeKind,
    Source,
    SubscriberAction,
    SubscriberEvent,
    SubscriptionScope,
)

from . import errors
from .config import Code, Config

INTEREST_AREA: Final = "INTEREST_AREA"  # CUS_OPT_IN.OPTION_TYPE_CODE of an interest area
SUB_CUSTOMER_ID: Final = 0  # the customer record itself, not one of its sub-records
TEXT_WIDTH: Final = 400  # CUS_ACTIVITY.ACTIVITY_TEXT
ID_WIDTH: Final = 24  # MASTER_CUSTOMER_ID

SOURCES: Final[dict[Source, str]] = {
    Source.MAILING_LINK: "mailing link",
    Source.ADMIN: "administrator",
    Source.SUBSCRIPTION_PAGE: "subscription page",
    Source.ACCOUNT_RULE: "account rule",
    Source.CRM_SYNC: "CRM sync",
    Source.LIST_UPLOAD: "list upload",
    Source.CAMPAIGN: "campaign",
    Source.SCHEDULED_TASK: "scheduled task",
    Source.SMS_REPLY: "SMS reply",
    Source.API: "API",
}
_SCOPE_WORDS: Final[dict[ScopeKind, str]] = {
    ScopeKind.GROUP_CATEGORY: "group category",
    ScopeKind.GROUP: "group",
    ScopeKind.MESSAGE_CATEGORY: "message category",
}


class Direction(StrEnum):
    OUT = "out"  # end the open period(s)
    IN = "in"  # open a new period where none is open


@dataclass(frozen=True, slots=True)
class OptInChange:
    """Interest areas to end or reopen. `all_mail`: the scope was all mail, so a reopening is
    limited to the interest areas the customer has had (it never opts anyone into a new one)."""

    direction: Direction
    codes: tuple[Code, ...]
    all_mail: bool


@dataclass(frozen=True, slots=True)
class ActivityRow:
    code: Code
    date: datetime  # naive, the site's local time
    text: str


@dataclass(frozen=True, slots=True)
class Plan:
    master_customer_id: str
    at: datetime  # naive, the site's local time: BEGIN_DATE / END_DATE / ACTIVITY_DATE
    opt_in: OptInChange | None
    activity: ActivityRow | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Nothing can be written: fails with this code before touching the database."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Not a Personify write: completed without one, counted."""

    code: str
    message: str


def plan(event: Event, config: Config, zone: ZoneInfo) -> Plan | Refusal | Skip:
    if not isinstance(event, SubscriberEvent) or event.action not in _DIRECTIONS:
        return Refusal(errors.UNSUPPORTED_EVENT, f"{event.event_type} event not written to Personify (seed 004)")
    if event.source == Source.CRM_SYNC:  # routing drops these; a replayed one must not loop back either
        return Skip(errors.ORIGINATED_IN_CRM, "the change came from Personify; it is not written back")
    customer_id = (event.recipient.integration_id or "").strip()
    if not customer_id or len(customer_id) > ID_WIDTH:
        return Refusal(errors.NO_CUSTOMER_ID, "the recipient has no Master Customer ID (Custom Member ID)")
    scope = event.scope or SubscriptionScope(kind=ScopeKind.ALL_MAIL)
    at = local_time(event.occurred_at, zone)
    opt_in: OptInChange | None = None
    if config.personify_mode.writes_opt_in:
        change = opt_in_change(event.action, scope, config)
        if isinstance(change, Refusal):
            return change
        opt_in = change
    activity = activity_row(event, scope, config, at) if config.personify_mode.writes_activity else None
    return Plan(customer_id, at, opt_in, activity)


_DIRECTIONS: Final = {
    SubscriberAction.UNSUBSCRIBE: Direction.OUT,
    SubscriberAction.SUBSCRIBE: Direction.IN,
    SubscriberAction.RESUBSCRIBE: Direction.IN,
}


def opt_in_change(action: SubscriberAction, scope: SubscriptionScope, config: Config) -> OptInChange | Refusal:
    """The interest areas a scope stands for under Manage Unsubscribe: one per mapped group
    category, group or message category; all of them for all mail."""
    manage = config.manage_unsubscribe
    assert manage is not None  # the config requires it in the opt-in modes
    direction = _DIRECTIONS[action]
    if scope.kind == ScopeKind.ALL_MAIL:
        return OptInChange(direction, manage.all_codes(), all_mail=True)
    assert scope.id is not None  # SubscriptionScope requires it
    code = manage.code_of(scope.kind, scope.id)
    if code is None:
        what = _SCOPE_WORDS.get(scope.kind, str(scope.kind).lower())
        message = f"Manage Unsubscribe maps no interest area to {what} {scope.id}"
        return Refusal(errors.UNMAPPED_GROUP, message)
    return OptInChange(direction, (code,), all_mail=False)


def activity_row(event: SubscriberEvent, scope: SubscriptionScope, config: Config, at: datetime) -> ActivityRow:
    code = config.unsubscribe_activity_code if _DIRECTIONS[event.action] is Direction.OUT else config.subscribe_activity_code
    return ActivityRow(code, at, activity_text(event, scope))


def activity_text(event: SubscriberEvent, scope: SubscriptionScope) -> str:
    """`Unsubscribed from group "Newsletters" (g-12) via mailing link`, then `; reason: …`."""
    verb = {
        SubscriberAction.UNSUBSCRIBE: "Unsubscribed from",
        SubscriberAction.SUBSCRIBE: "Subscribed to",
        SubscriberAction.RESUBSCRIBE: "Resubscribed to",
    }[event.action]
    if scope.kind == ScopeKind.ALL_MAIL:
        target = "all mail"
    else:
        name = f' "{scope.name}"' if scope.name else ""
        target = f"{_SCOPE_WORDS.get(scope.kind, str(scope.kind).lower())}{name} ({scope.id})"
    text = f"{verb} {target} via {SOURCES.get(event.source, str(event.source).lower())}"
    if event.reason:
        text += f"; reason: {' '.join(event.reason.split())}"
    return text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"


def local_time(moment: datetime, zone: ZoneInfo) -> datetime:
    """A moment as Personify stores it: naive, in the site's zone, to the millisecond (DATETIME
    keeps about a third of one; the tests compare what was written with what was read)."""
    local = moment.astimezone(zone).replace(tzinfo=None)
    return local.replace(microsecond=local.microsecond - local.microsecond % 1000)
