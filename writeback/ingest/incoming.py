"""A consumed event as ingest handles it: decoded plain data, screened, with the model built
only when a rule needs it.

Building the contract's model costs as much as decoding the record (bench/results/ingest.md),
and most events need nothing from it at ingest: their route is remembered from an earlier event
with the same route key, and the row stores the event as JSON. The model is built for a route
not yet remembered and for the subscriber-state rules, and otherwise when the row is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from writeback.contract.events import (
    ActivityEvent,
    CommunityListEvent,
    Event,
    validation_summary,
)
from writeback.contract.screen import screen
from writeback.errors import InvalidEvent
from writeback.kafka.consumer import Consumed


@dataclass(slots=True)
class Incoming:
    record: Consumed
    model: type[Event]
    data: dict[str, Any]  # as decoded, only the fields the model knows
    event_id: str
    account_id: str
    occurred_at: datetime
    recipient_key: str
    mailing_id: str | None
    payload: str  # the event as the ledger stores it (see `screen`)
    _event: Event | None = None

    def event(self) -> Event:
        """The validated model; InvalidEvent (field and reason) if the event breaks the contract."""
        if self._event is None:
            try:
                self._event = self.model.model_validate(self.data)
            except ValidationError as exc:
                raise InvalidEvent(validation_summary(exc)) from None
        return self._event

    @property
    def identities(self) -> tuple[str, ...]:
        """Every name the recipient goes by in subscriber state: a CRM-side unsubscribe keyed by
        email must still match a resubscribe that carries the integration id, and the reverse."""
        recipient = self.data.get("recipient")
        if recipient is None:
            return ()
        email = recipient.get("email")
        return tuple(i for i in (recipient.get("integration_id"), email.lower() if email else None) if i)


def incoming(record: Consumed, data: dict[str, Any], model: type[Event]) -> Incoming:
    """Screen decoded data (InvalidEvent if it would harm the ledger or a CRM) and keep what
    every row of it needs."""
    event_id, payload = screen(data, model)
    recipient = data.get("recipient")
    mailing = data.get("mailing") if model is ActivityEvent else None
    found = Incoming(
        record=record,
        model=model,
        data=data,
        event_id=event_id,
        account_id=data["account_id"],
        occurred_at=data["occurred_at"],
        recipient_key=(recipient.get("integration_id") or recipient["email"].lower()) if recipient else "",
        mailing_id=mailing.get("mailing_id") if mailing else None,
        payload=payload,
    )
    if model is CommunityListEvent:  # rare at ingest (dropped there): screened by the model
        event = found.event()
        assert isinstance(event, CommunityListEvent)
        found.recipient_key = event.legacy_contact_key
    return found


def from_event(record: Consumed, event: Event) -> Incoming:
    """An already validated event, as replay and the benchmarks hold them."""
    data = event.model_dump()
    found = incoming(record, data, type(event))
    found._event = event
    return found

