"""Salesforce's answers mapped once to error kinds: what the flusher's retries and breaker read."""

from __future__ import annotations

import pytest

from writeback.adapters.base import ErrorKind
from writeback.adapters.salesforce.errors import (
    RECORD_KINDS,
    UNKNOWN_RECIPIENT_CODES,
    call_kind,
    scrub,
)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [(503, "HTTP_503", ErrorKind.OUTAGE), (500, "UNKNOWN_EXCEPTION", ErrorKind.OUTAGE),
     (599, "HTTP_599", ErrorKind.OUTAGE), (408, "HTTP_408", ErrorKind.OUTAGE),
     (429, "HTTP_429", ErrorKind.THROTTLED), (403, "REQUEST_LIMIT_EXCEEDED", ErrorKind.THROTTLED),
     (401, "INVALID_SESSION_ID", ErrorKind.CREDENTIALS),
     (400, "MALFORMED_QUERY", None), (404, "NOT_FOUND", None), (403, "INSUFFICIENT_ACCESS", None)],
)  # fmt: skip
def test_a_failed_call_is_an_outage_throttling_credentials_or_the_orgs_final_word(status, code, kind):
    assert call_kind(status, code) is kind


def test_record_codes_that_pass_by_themselves_are_retried_and_unknown_recipients_are_not():
    assert RECORD_KINDS == {
        "UNABLE_TO_LOCK_ROW": ErrorKind.CONTENTION,
        "ALL_OR_NONE_OPERATION_ROLLED_BACK": ErrorKind.CONTENTION,
        "SERVER_UNAVAILABLE": ErrorKind.OUTAGE,
        "REQUEST_LIMIT_EXCEEDED": ErrorKind.THROTTLED,
    }
    assert UNKNOWN_RECIPIENT_CODES.isdisjoint(RECORD_KINDS)


def test_messages_lose_emails_and_session_tokens():
    text = scrub("duplicate value pat@example.org, header Bearer 00D5g000000abcd!AQ4AQ.xyz")
    assert "pat@example.org" not in text and "00D5g000000abcd!" not in text and "<email>" in text
