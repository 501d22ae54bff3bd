"""The checks ingest makes on a decoded event before it stores it, without building its model.

Only what protects the ledger and the CRMs, at a fraction of the model's cost: ids within the
ledger's column bounds, no NUL character anywhere (PostgreSQL stores none, in a column or in
JSON), a recipient a CRM can match (an identity, a plausible email) and a real instant. The rest
of the contract (enum symbols, subcodes fitting codes, details fitting subcodes) is the model's,
checked when a rule at ingest needs the model and otherwise when the row is written: the flusher
fails a row whose event breaks the contract and dead-letters it with the field and the reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from writeback.contract.events import (
    ID_MAX,
    RECIPIENT_ID_MAX,
    ActivityEvent,
    Event,
    SubscriberEvent,
    canonical_uuid,
    plausible_email,
)
from writeback.errors import InvalidEvent


def screen(data: dict[str, Any], model: type[Event]) -> tuple[str, str]:
    """Raise InvalidEvent naming the first field that would harm the ledger or a CRM; return the
    event id in its canonical text form (the writeback ids are made from it) and the event as
    the JSON the ledger stores, as the model would write it (`model_dump_json`: orjson writes a
    decoded record's UUIDs, UTC instants and symbols in the same form)."""
    try:
        payload = orjson.dumps(data, option=orjson.OPT_UTC_Z).decode()
    except orjson.JSONEncodeError:
        raise InvalidEvent("event: a value cannot be stored as JSON") from None
    if "\\u0000" in payload:  # JSON escapes NUL, so only then is the walk worth it
        problem = _nul_in(data, "")
        if problem:
            raise InvalidEvent(f"{problem}: must not contain NUL characters")
    try:
        event_id = canonical_uuid(data.get("event_id"))
    except ValueError:
        raise InvalidEvent("event_id: not a UUID") from None
    _bounded(data, "account_id", ID_MAX, "account_id", required=True)
    occurred_at = data.get("occurred_at")
    if type(occurred_at) is not datetime or occurred_at.utcoffset() is None:
        raise InvalidEvent("occurred_at: not an instant with a time zone")
    if model is SubscriberEvent or model is ActivityEvent:
        recipient = data.get("recipient")
        if type(recipient) is not dict:
            raise InvalidEvent("recipient: missing")
        email = recipient.get("email")
        if email is not None:
            if type(email) is not str:
                raise InvalidEvent("recipient.email: not a string")
            try:
                plausible_email(email)
            except ValueError as exc:
                raise InvalidEvent(f"recipient.email: {exc}") from None
        elif recipient.get("integration_id") is None:
            raise InvalidEvent("recipient: needs at least one of email and integration_id")
        _bounded(recipient, "integration_id", RECIPIENT_ID_MAX, "recipient.integration_id")
    if model is ActivityEvent and data.get("mailing") is not None:
        mailing = data["mailing"]
        if type(mailing) is not dict:
            raise InvalidEvent("mailing: not a record")
        _bounded(mailing, "mailing_id", ID_MAX, "mailing.mailing_id")
    return event_id, payload


def _bounded(record: dict[str, Any], name: str, longest: int, where: str, *, required: bool = False) -> None:
    value = record.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"{where}: missing")
        return
    if type(value) is not str or not value:
        raise InvalidEvent(f"{where}: must be a non-empty string")
    if len(value) > longest:
        raise InvalidEvent(f"{where}: must have at most {longest} characters")


def _nul_in(value: Any, where: str) -> str | None:
    """The path of the first text holding a NUL character, if any."""
    if type(value) is str:
        return (where or "event") if "\x00" in value else None
    if type(value) is dict:
        items: Any = value.items()
    elif type(value) is list:
        items = enumerate(value)
    else:
        return None
    for name, inner in items:
        found = _nul_in(inner, f"{where}.{name}" if where else str(name))
        if found:
            return found
    return None
