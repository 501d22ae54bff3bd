"""The unit of work that flows from the ledger, through the flusher, to a CRM adapter.

These types are the boundary between the ledger (which owns persistence) and the adapters
(which own CRM protocols): adapters never see SQLAlchemy rows, and the ledger never sees HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class WritebackClass(StrEnum):
    """Which schedule a writeback waits for: subscriber status (every ten minutes, never
    disableable) or mailing/recipient activity (optional, per-connection cadence)."""

    SUBSCRIBER = "subscriber"
    ACTIVITY = "activity"


class MailingActivity(StrEnum):
    """The mailing-activity writebacks of seed 000 (netFORUM); Salesforce offers Sent and Opened."""

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


class Disposition(StrEnum):
    """What an adapter says happened to one writeback."""

    COMPLETED = "completed"
    RETRY = "retry"  # transient: the row stays pending and is tried again later
    FAILED = "failed"  # permanent: the row fails and goes to the dead-letter topic


@dataclass(frozen=True, slots=True)
class Writeback:
    """One event bound for one CRM connection.

    `event` is the decoded event as JSON-compatible data (the pydantic model's
    `model_dump(mode="json")`), so adapters and replay work from one representation.
    """

    id: str
    account_id: str
    connection_id: str
    wb_class: WritebackClass
    recipient_key: str
    occurred_at: datetime
    event_type: str  # "subscriber" | "activity" | "community"
    event: dict[str, Any]
    attempts: int = 0
    first_failed_at: datetime | None = None
    source: tuple[str, int, int] | None = None  # (topic, partition, offset) it was consumed from
    replay_count: int = 0  # times an engineer replayed its dead letter


@dataclass(frozen=True, slots=True)
class Outcome:
    writeback_id: str
    disposition: Disposition
    error_code: str | None = None
    error_message: str | None = None
    retry_after: float | None = None  # seconds, when the CRM said so (Retry-After)
    crm_ids: tuple[str, ...] = field(default=())  # ids the CRM gave what we wrote

    @classmethod
    def completed(cls, writeback_id: str, *crm_ids: str) -> Outcome:
        return cls(writeback_id, Disposition.COMPLETED, crm_ids=crm_ids)

    @classmethod
    def failed(cls, writeback_id: str, code: str, message: str) -> Outcome:
        return cls(writeback_id, Disposition.FAILED, code, message)

    @classmethod
    def retry(
        cls, writeback_id: str, code: str, message: str, retry_after: float | None = None
    ) -> Outcome:
        return cls(writeback_id, Disposition.RETRY, code, message, retry_after)


class Adapter(Protocol):
    """What the flusher needs from a CRM adapter: one Outcome per writeback, in input order."""

    max_batch: int

    def write(self, batch: Sequence[Writeback]) -> list[Outcome]: ...

    def close(self) -> None: ...
