"""What each writeback becomes in Salesforce (seed 002, and seed 001 for tracking), without I/O.

- Unsubscribe, bad email, resubscribe → a classic `Note` on the Contact/Lead. Seed 002 says the
  text appears under "Notes and Attachments", which is where classic notes show; a Note is one
  atomic insert, where an enhanced `ContentNote` needs a second link insert and can be left
  orphaned between the two. Title = the seed sentence exactly; Body = the sentence,
  `Reason: …` when there is one, and a last line `Informz writeback id: <id>` (the marker that
  makes notes idempotent: Notes have no external-id field).
- Email Opt Out → `HasOptedOutOfEmail`, set with an unsubscribe, cleared with a resubscribe,
  unless the connection suppresses it (002).
- Mailing activity (Sent, Opened) and tracking pairs → a `Task` keyed by the external id
  `Writeback_Id__c` = writeback id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from writeback.adapters.base import Outcome, Writeback
from writeback.adapters.salesforce.errors import (
    ACTION_NOT_WRITTEN,
    ACTIVITY_NOT_WRITTEN,
    INTEGRATION_ID_MISMATCH,
    clip,
)
from writeback.contract.events import ActivityEvent, SubscriberEvent

NOTE_MARKER = "Informz writeback id: "
TASK_EXTERNAL_ID = "Writeback_Id__c"
RECIPIENT_OBJECTS = {"003": "Contact", "00Q": "Lead"}
MARKER_RE = re.compile("^" + re.escape(NOTE_MARKER) + r"(\S+)\s*$", re.MULTILINE)

_SUBSCRIBER_RULES: dict[str, tuple[str, bool, str | None]] = {
    # action: (verb in the note, Email Opt Out value, fixed reason)
    "UNSUBSCRIBE": ("unsubscribed from", True, None),
    "BAD_EMAIL": ("unsubscribed from", True, "Bad Email"),
    "RESUBSCRIBE": ("resubscribed to", False, None),
}
_RECORD_TYPES = {"CONTACT": "Contact", "LEAD": "Lead"}
_ID_RE = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-5]{3})?")
_ID_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


@dataclass(frozen=True, slots=True)
class Recipient:
    who_id: str  # 18-character
    sobject: str  # "Contact" | "Lead"


@dataclass(frozen=True, slots=True)
class SubscriberChange:
    """A note on a Contact/Lead, and the Email Opt Out value to set first (None: leave it)."""

    recipient: Recipient
    title: str
    body: str
    opted_out: bool | None


@dataclass(frozen=True, slots=True)
class ActivityRecord:
    """Task fields, upserted on Writeback_Id__c."""

    fields: dict[str, Any]


Plan = Outcome | SubscriberChange | ActivityRecord


def id18(value: object) -> str | None:
    """The canonical 18-character form of a Salesforce record id, or None if `value` is not one.

    Orgs hand out case-sensitive 15-character ids and case-insensitive 18-character ones (the
    last three characters encode the capitals); comparing ids only works once both are 18 long.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        return None
    base = value[:15]
    suffix = "".join(
        _ID_SUFFIX_CHARS[sum(1 << bit for bit, ch in enumerate(base[k : k + 5]) if "A" <= ch <= "Z")]
        for k in (0, 5, 10)
    )
    if len(value) == 18 and value[15:].upper() != suffix:
        return None
    return base + suffix


def subscriber_change(wb: Writeback, zone: ZoneInfo, suppress_opt_out: bool) -> Plan:
    event = wb.event
    assert isinstance(event, SubscriberEvent)
    rule = _SUBSCRIBER_RULES.get(str(event.action))
    if rule is None:
        return Outcome.counted(
            wb.id,
            ACTION_NOT_WRITTEN,
            f"{event.action} is not a Salesforce writeback (seed 002: unsubscribe, resubscribe, bad email)",
        )
    recipient = recipient_of(wb)
    if isinstance(recipient, Outcome):
        return recipient
    verb, opted_out, fixed_reason = rule
    title = f"{recipient.sobject} {verb} Informz on {stamp(wb.occurred_at, zone)}"
    reason = fixed_reason or ((event.reason or "").strip() or None)
    lines = [title, *([f"Reason: {clip(reason, 1000)}"] if reason else []), NOTE_MARKER + wb.id]
    return SubscriberChange(recipient, title, "\n".join(lines), None if suppress_opt_out else opted_out)


def mailing_task(wb: Writeback, zone: ZoneInfo, zone_name: str) -> Plan:
    event = wb.event
    assert isinstance(event, ActivityEvent)
    code, subcode = str(event.code), str(event.subcode)
    if (code, subcode) == ("Sent", "Delivered"):
        subject = "Informz mailing sent"
    elif code == "Opened":
        subject = "Informz mailing opened"
    else:
        return Outcome.counted(
            wb.id, ACTIVITY_NOT_WRITTEN, f"Salesforce mailing activity is Sent and Opened only; {code}/{subcode} is counted"
        )
    recipient = recipient_of(wb)
    if isinstance(recipient, Outcome):
        return recipient
    return ActivityRecord(task_fields(wb, recipient, (code, subcode), subject, zone, zone_name))


def tracking_task(wb: Writeback, pair: tuple[str, str] | None, zone: ZoneInfo, zone_name: str) -> Plan:
    if pair is None:
        return Outcome.counted(wb.id, ACTIVITY_NOT_WRITTEN, "no seed-001 Activity Code/Subcode for this event")
    recipient = recipient_of(wb)
    if isinstance(recipient, Outcome):
        return recipient
    return ActivityRecord(task_fields(wb, recipient, pair, f"{pair[0]}: {pair[1]}", zone, zone_name))


def task_fields(
    wb: Writeback, recipient: Recipient, pair: tuple[str, str], subject: str, zone: ZoneInfo, zone_name: str
) -> dict[str, Any]:
    name = _event_name(wb)
    return {
        "WhoId": recipient.who_id,
        "Subject": clip(f"{subject} - {name}" if name else subject, 255),
        "ActivityDate": wb.occurred_at.astimezone(zone).date().isoformat(),
        "Status": "Completed",
        "Priority": "Normal",
        "Description": clip(_task_description(wb, zone, zone_name), 32000),
        "Activity_Group__c": clip(pair[0], 255),
        "Activity__c": clip(pair[1], 255),
        TASK_EXTERNAL_ID: wb.id,
    }


def _task_description(wb: Writeback, zone: ZoneInfo, zone_name: str) -> str:
    event = wb.event
    lines = [f"Occurred: {stamp(wb.occurred_at, zone)} ({zone_name})"]
    if isinstance(event, ActivityEvent):
        if event.mailing is not None:
            lines.append(f"Mailing: {event.mailing.name}")
            lines.append(f"Mailing sent: {stamp(event.mailing.send_date, zone)}")
        if event.open is not None:
            details = [v for v in (event.open.device, event.open.client, event.open.country) if v]
            if details:
                lines.append("Opened with: " + " | ".join(details))
        if event.click is not None:
            lines.append(f"Clicked: {str(event.click.target).lower()}")
        if event.name:
            lines.append(f"Survey/Event: {event.name}")
    return "\n".join(lines)


def recipient_of(wb: Writeback) -> Recipient | Outcome:
    """The Contact/Lead a writeback targets: record_type when given, else the id's prefix; the
    two must agree. The raw value is never echoed: a mistyped id field can hold an email."""
    event = wb.event
    assert isinstance(event, SubscriberEvent | ActivityEvent)
    raw = event.recipient.integration_id
    if not raw:
        return Outcome.failed(wb.id, INTEGRATION_ID_MISMATCH, "the recipient has no Salesforce integration id")
    who_id = id18(raw.strip())
    by_prefix = RECIPIENT_OBJECTS.get(who_id[:3]) if who_id else None
    if who_id is None or by_prefix is None:
        return Outcome.failed(wb.id, INTEGRATION_ID_MISMATCH, "the integration id is not a Salesforce Contact or Lead id")
    declared = _RECORD_TYPES.get(str(event.recipient.record_type or "").upper())
    if declared is not None and declared != by_prefix:
        return Outcome.failed(
            wb.id,
            INTEGRATION_ID_MISMATCH,
            f"record type {declared} does not match the integration id, which is a {by_prefix}",
        )
    return Recipient(who_id, by_prefix)


def _event_name(wb: Writeback) -> str | None:
    event = wb.event
    if isinstance(event, ActivityEvent):
        return (event.mailing.name if event.mailing else None) or event.name
    return None


def stamp(moment: datetime, zone: ZoneInfo) -> str:
    """Seed 002's `mm/dd/yy hh:mm:ss tt` in the connection's zone, AM/PM independent of locale."""
    local = moment.astimezone(zone)
    return f"{local:%m/%d/%y %I:%M:%S} {'AM' if local.hour < 12 else 'PM'}"
