"""What a writeback is across the service: its class (which schedule it waits for), its status
in the writeback list, the optional mailing-activity types, and a row as the flusher claims it.
What an adapter receives and answers is in `writeback.adapters.base`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class WritebackClass(StrEnum):
    """Which schedule a writeback waits for: subscriber status (every ten minutes, never
    disableable) or mailing/recipient activity (optional, per-connection cadence)."""

    SUBSCRIBER = "subscriber"
    ACTIVITY = "activity"


class MailingActivity(StrEnum):
    """The optional mailing-activity writebacks of seed 000; each kind offers some of them."""

    SENT = "sent"
    OPENED = "opened"
    CLICK = "click"
    BLOCK = "block"
    BOUNCE = "bounce"
    SOCIAL_SHARING = "social_sharing"


class Status(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A ledger row the flusher claimed, with its event as stored (JSON-compatible data). The
    flusher decodes the event into the contract's model before an adapter sees it."""

    id: str
    account_id: str
    connection_id: str
    wb_class: WritebackClass
    recipient_key: str
    occurred_at: datetime
    event_type: str  # "subscriber" | "activity" | "community"
    payload: dict[str, Any]
    attempts: int = 0
    first_failed_at: datetime | None = None
    source: tuple[str, int, int] | None = None  # (topic, partition, offset) it was consumed from
    replay_count: int = 0  # times an engineer replayed its dead letter
    window_closes_at: datetime | None = None  # when it became due (window lateness is measured from it)
