"""Seed 000's rules as xWeb field values: a typed event and the Individual it is about in, the
CustomerMessagingActivity row or Individual fields to write out. Pure: no calls, no clock.

Every value is checked here against what xWeb would refuse (widths, date format, XML-safe text),
so a refusal costs the writeback, never a fault. The widths are SQL Server column widths as the
simulator models them (netFORUM does not publish its own); a site with narrower columns would
answer StringTooLong, which fails that writeback alone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from writeback.adapters.base import mailing_activity
from writeback.contract import taxonomy
from writeback.contract.events import (
    ActivityEvent,
    ClickTarget,
    Event,
    Source,
    SubscriberAction,
    SubscriberEvent,
)
from writeback.ledger.rows import MailingActivity

from . import errors

ACTIVITY_OBJECT: Final = "CustomerMessagingActivity"
INDIVIDUAL_OBJECT: Final = "Individual"

MAILING_CODE: Final = "Informz Mailing"
UNSUBSCRIBE_CODE: Final = "InformzUnsubscribe"
SUBCODES: Final[dict[MailingActivity, str]] = {
    MailingActivity.SENT: "Sent",
    MailingActivity.OPENED: "Open",
    MailingActivity.CLICK: "Click",
    MailingActivity.BLOCK: "Block",
    MailingActivity.BOUNCE: "Bounce",
    MailingActivity.SOCIAL_SHARING: "Social Sharing",
}
SENT_MESSAGE: Final = "Mailing was sent"
LINK_MESSAGE: Final = "Hyperlink was clicked"
ADVERTISEMENT_MESSAGE: Final = "Advertisement was clicked"
BLOCK_MESSAGE: Final = "Mailing was blocked"
OPEN_ACTION: Final = "Open"  # the "Mailing Action" of the Open message name
MISSING: Final = "Unknown"  # an open detail the event does not carry
BAD_EMAIL_REASON: Final = "Bad Email"  # when the event gives no reason
BOUNCES: Final[dict[str, str]] = {
    "SoftBounce": "soft bounce",
    "HardBounce": "hard bounce",
    "UserNotFound": "user not found",
    "MailboxFull": "mailbox full",
    "TemporarilyUnavailable": "temporarily unavailable",
    "BadDomain": "bad domain",
    "SendFailed": "send failed",
}
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

NO_EMAIL_SET: Final = {"cst_no_email_flag": "1"}
NO_EMAIL_CLEARED: Final = {"cst_no_email_flag": "0"}
SOFT_DELETE: Final = {"cma_delete_flag": "1"}

NAME_WIDTH, EMAIL_WIDTH, ID_WIDTH, CODE_WIDTH = 255, 100, 50, 50

Fields = dict[str, str]
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACE = re.compile(r"\s+")
_LAYOUTS = (
    "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y"
)  # fmt: skip


class Change(StrEnum):
    """What a writeback does to the Individual."""

    MAILING_ACTIVITY = "mailing_activity"  # one activity row
    UNSUBSCRIBE = "unsubscribe"  # cst_no_email_flag set, then one activity row
    RESUBSCRIBE = "resubscribe"  # the unsubscribe rows soft-deleted, cst_no_email_flag cleared
    BAD_EMAIL = "bad_email"  # the primary email's eml_invalid_flag and eml_invalid_reason
    TRACKING = "tracking"  # one activity row with a seed-001 code/subcode pair, nothing else


@dataclass(frozen=True, slots=True)
class Refusal:
    """Nothing can be written for this writeback: it fails with this code, before any call."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Not a netFORUM writeback: completed without a write, counted in the writeback list."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Customer:
    """An Individual as a lookup found it: its key and primary email."""

    cst_key: str
    eml_key: str | None
    eml_address: str | None


_SUBSCRIBER_CHANGES = {
    SubscriberAction.UNSUBSCRIBE: Change.UNSUBSCRIBE,
    SubscriberAction.RESUBSCRIBE: Change.RESUBSCRIBE,
    SubscriberAction.BAD_EMAIL: Change.BAD_EMAIL,
}


def change_of(event: Event) -> Change | Refusal | Skip:
    if isinstance(event, SubscriberEvent):
        change = _SUBSCRIBER_CHANGES.get(event.action)
        if change is None:
            return Skip(errors.ACTION_NOT_WRITTEN, f"{event.action} is not a netFORUM writeback (seed 000)")
        return change
    if isinstance(event, ActivityEvent):
        if mailing_activity(event) is None:
            message = f"{event.subcode} is not one of seed 000's mailing activities"
            return Skip(errors.ACTIVITY_NOT_WRITTEN, message)
        if event.mailing is None:
            message = "mailing activity needs its mailing: the Date is its send date"
            return Refusal(errors.MAILING_MISSING, message)
        return Change.MAILING_ACTIVITY
    return Refusal(errors.UNSUPPORTED_EVENT, f"{event.event_type} events are not written to netFORUM")


def tracking_change_of(event: Event) -> Change | Skip:
    """Seed 001 as netFORUM's integrated product: every event with a code/subcode pair is one
    row; RESUBSCRIBE and BAD_EMAIL have none in 001 and are counted, not written."""
    if isinstance(event, ActivityEvent | SubscriberEvent) and taxonomy.tracking_pair(event) is not None:
        return Change.TRACKING
    return Skip(errors.ACTIVITY_NOT_WRITTEN, "no seed-001 Activity Code/Subcode for this event")


def activity_id(writeback_id: str) -> str:
    """`cma_activity_id`, the idempotency key: the writeback id (a 36-character UUID), or a digest
    of it should one ever be longer than the column."""
    if len(writeback_id) <= ID_WIDTH:
        return writeback_id
    return "wb-" + hashlib.sha256(writeback_id.encode()).hexdigest()[: ID_WIDTH - 3]


def mailing_activity_row(
    event: ActivityEvent, customer: Customer, key: str, zone: ZoneInfo
) -> Fields | Refusal:
    activity = mailing_activity(event)
    assert activity is not None and event.mailing is not None  # change_of said so
    email = email_fields(event.recipient.email, customer)
    if isinstance(email, Refusal):
        return email
    row = {
        "cma_cst_key": customer.cst_key,
        **email,
        "cma_activity_date": xweb_date(event.mailing.send_date, zone),
        "cma_activity_code": MAILING_CODE,
        "cma_activity_subcode": SUBCODES[activity],
        "cma_message_name": message_name(event, activity),
        "cma_activity_id": key,
    }
    if len(event.mailing.mailing_id) <= ID_WIDTH:
        row["cma_message_id"] = event.mailing.mailing_id
    return row


def message_name(event: ActivityEvent, activity: MailingActivity) -> str:
    """000's Message Name of a mailing activity; Block, Bounce and Social Sharing have none in 000."""
    if activity is MailingActivity.OPENED:
        opened = event.open
        details = [opened.device, opened.client, opened.country] if opened else [None, None, None]
        return " | ".join([OPEN_ACTION, *(_detail(value) for value in details)])
    if activity is MailingActivity.CLICK:
        advertisement = event.click is not None and event.click.target == ClickTarget.ADVERTISEMENT
        return ADVERTISEMENT_MESSAGE if advertisement else LINK_MESSAGE
    if activity is MailingActivity.BLOCK:
        return BLOCK_MESSAGE
    if activity is MailingActivity.BOUNCE:
        return f"Mailing bounced ({BOUNCES.get(str(event.subcode), 'bounce')})"
    if activity is MailingActivity.SOCIAL_SHARING:
        network = _text(event.social.network, 100) if event.social else ""
        return f"Mailing was shared on {network or MISSING}"
    return SENT_MESSAGE


def tracking_row(
    event: ActivityEvent | SubscriberEvent, customer: Customer, key: str, zone: ZoneInfo
) -> Fields | Refusal:
    """001's pair as `cma_activity_code` / `cma_activity_subcode` (as a public xWeb example writes
    code "Sent" with a subcode), dated when it happened. `cma_message_name` (choice) holds the
    survey's or event's name (001 writes back only that name for them), else the mailing's."""
    pair = taxonomy.tracking_pair(event)
    assert pair is not None  # tracking_change_of said so
    if any(len(part) > CODE_WIDTH for part in pair):
        return Refusal(errors.UNSUPPORTED_EVENT, f"the code/subcode is longer than netFORUM's {CODE_WIDTH} characters")
    email = email_fields(event.recipient.email, customer)
    if isinstance(email, Refusal):
        return email
    row = {
        "cma_cst_key": customer.cst_key,
        **email,
        "cma_activity_date": xweb_date(event.occurred_at, zone),
        "cma_activity_code": pair[0],
        "cma_activity_subcode": pair[1],
        "cma_activity_id": key,
    }
    mailing = event.mailing if isinstance(event, ActivityEvent) else None
    name = (event.name if isinstance(event, ActivityEvent) else None) or (mailing.name if mailing else None)
    if name and (text := _text(name, NAME_WIDTH)):
        row["cma_message_name"] = text
    if mailing is not None and len(mailing.mailing_id) <= ID_WIDTH:
        row["cma_message_id"] = mailing.mailing_id
    return row


def unsubscribe_row(
    event: SubscriberEvent, customer: Customer, key: str, zone: ZoneInfo
) -> Fields | Refusal:
    email = email_fields(event.recipient.email, customer)
    if isinstance(email, Refusal):
        return email
    return {
        "cma_cst_key": customer.cst_key,
        **email,
        "cma_activity_date": xweb_date(event.occurred_at, zone),
        "cma_activity_code": UNSUBSCRIBE_CODE,
        "cma_message_name": unsubscribe_message(event, zone),
        "cma_activity_id": key,
    }


def unsubscribe_message(event: SubscriberEvent, zone: ZoneInfo) -> str:
    """`MM/DD/YYYY hh:mm:ss AM via <source>`, then `; reason: <reason>` when one was given."""
    moment = event.occurred_at.astimezone(zone)
    stamp = f"{moment:%m/%d/%Y %I:%M:%S} {'AM' if moment.hour < 12 else 'PM'}"
    text = f"{stamp} via {SOURCES.get(event.source, str(event.source).lower())}"
    reason = _text(event.reason or "", NAME_WIDTH - len(text) - len("; reason: "))
    return f"{text}; reason: {reason}" if reason else text


def bad_email_fields(event: SubscriberEvent, customer: Customer) -> Fields | Refusal:
    """The Individual facade marks its primary email; another address of the Individual cannot be
    reached through it, so that writeback fails rather than mark the wrong address."""
    if customer.eml_key is None or customer.eml_address is None:
        return Refusal(errors.NO_EMAIL_ADDRESS, "the Individual has no primary email to mark as bad")
    if event.recipient.email is not None and not _same(event.recipient.email, customer.eml_address):
        return Refusal(errors.EMAIL_NOT_PRIMARY, "the bad address is not the Individual's primary email")
    reason = _text(event.reason or "", NAME_WIDTH) or BAD_EMAIL_REASON
    return {"eml_invalid_flag": "1", "eml_invalid_reason": reason}


def email_fields(email: str | None, customer: Customer) -> Fields | Refusal:
    """000's Email Address: the event's address; by key when it is the Individual's primary email
    (or the event has none), which links the row to the co_email record."""
    if customer.eml_key is not None and (email is None or _same(email, customer.eml_address)):
        return {"cma_eml_key": customer.eml_key}
    if email is None:
        return Refusal(errors.NO_EMAIL_ADDRESS, "neither the event nor the Individual has an email address")
    if len(email) > EMAIL_WIDTH:
        message = f"the address is longer than netFORUM's {EMAIL_WIDTH} characters"
        return Refusal(errors.NO_EMAIL_ADDRESS, message)
    return {"cma_eml_address": email}


def xweb_date(moment: datetime, zone: ZoneInfo) -> str:
    """`MM/DD/YYYY HH:MM:SS.fff` (xWeb's examples) in the site's zone: netFORUM dates have no offset."""
    local = moment.astimezone(zone)
    return f"{local:%m/%d/%Y %H:%M:%S}.{local.microsecond // 1000:03d}"


def site_time(moment: datetime, zone: ZoneInfo) -> datetime:
    """A moment as netFORUM stores it: naive, in the site's zone, to the millisecond."""
    local = moment.astimezone(zone).replace(tzinfo=None)
    return local.replace(microsecond=local.microsecond - local.microsecond % 1000)


def parse_site_time(text: str) -> datetime | None:
    """A date as GetQuery renders it (ISO 8601, or xWeb's US format)."""
    for layout in _LAYOUTS:
        try:
            return datetime.strptime(text.strip(), layout)
        except ValueError:
            continue
    return None


def _detail(value: str | None) -> str:
    """One field of the Open message: pipes would shift the fields, so they become slashes."""
    return _text((value or "").replace("|", "/"), 60) or MISSING


def _text(value: str, limit: int) -> str:
    """Free text as xWeb can take it: XML-safe, one line, within the column."""
    text = _SPACE.sub(" ", _NOT_XML.sub("", value)).strip()
    if limit <= 0:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _same(a: str, b: str | None) -> bool:
    return b is not None and a.casefold() == b.casefold()
