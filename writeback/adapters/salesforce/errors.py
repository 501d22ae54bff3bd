"""Salesforce's answers, mapped once to the error kinds the flusher reads.

Codes are Salesforce's own (`statusCode` of a SaveResult, `errorCode` of an error body, OAuth's
`error`), kept as the outcome's code so the writeback list and dead letters show what the org
said; the kind is what retries and the breaker act on.
"""

from __future__ import annotations

import re

from writeback.adapters.base import ErrorKind

INTEGRATION_ID_MISMATCH = "INTEGRATION_ID_MISMATCH"  # no live Contact/Lead has the integration id
ACTIVITY_NOT_WRITTEN = "ACTIVITY_NOT_WRITTEN"  # mailing activity Salesforce does not take (002)
ACTION_NOT_WRITTEN = "ACTION_NOT_WRITTEN"  # a subscriber action Salesforce does not take (002)
UNSUPPORTED_EVENT_TYPE = "UNSUPPORTED_EVENT_TYPE"

# per-record codes that pass by themselves: the record is retried, not failed
RECORD_KINDS: dict[str, ErrorKind] = {
    "UNABLE_TO_LOCK_ROW": ErrorKind.CONTENTION,
    "ALL_OR_NONE_OPERATION_ROLLED_BACK": ErrorKind.CONTENTION,
    "SERVER_UNAVAILABLE": ErrorKind.OUTAGE,
    "REQUEST_LIMIT_EXCEEDED": ErrorKind.THROTTLED,
}
# per-record codes that mean the integration id names no live Contact or Lead
UNKNOWN_RECIPIENT_CODES = frozenset(
    {"INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED", "FIELD_INTEGRITY_EXCEPTION", "MALFORMED_ID"}
)

_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TOKEN_RE = re.compile(r"\b00D\w{12,15}![\w.]+|(?i:bearer)\s+\S+")


class CallFailed(Exception):
    """A whole Salesforce call failed; every writeback riding on it gets the same outcome.
    `kind` None means the org refused the call for good (the writebacks fail)."""

    def __init__(self, kind: ErrorKind | None, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.kind = kind
        self.code = code
        self.message = message
        self.retry_after = retry_after


def call_kind(status: int, code: str) -> ErrorKind | None:
    """The kind of a failed HTTP call; None when it is the org's final word on the request."""
    if status == 401:
        return ErrorKind.CREDENTIALS
    if status == 429 or code == "REQUEST_LIMIT_EXCEEDED":
        return ErrorKind.THROTTLED
    if status == 408 or status >= 500:
        return ErrorKind.OUTAGE
    return None


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub(message: str) -> str:
    """Salesforce messages can quote field values (validation rules, duplicates): keep emails
    and session tokens out of outcomes and logs."""
    return clip(_TOKEN_RE.sub("<token>", _EMAIL_RE.sub("<email>", message)), 500)
