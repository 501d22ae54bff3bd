"""What ingest checks on a decoded event before storing it without its model: what protects the
ledger and the CRMs, named by field; the JSON it stores is the model's own."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from writeback_dev.samples import all_event_samples

from writeback.contract.events import (
    ActivityEvent,
    Event,
    SubscriberEvent,
    known_fields,
    parse_event,
    resolved_schema,
)
from writeback.contract.screen import screen
from writeback.errors import InvalidEvent

SAMPLES = [e for e in all_event_samples() if isinstance(e, SubscriberEvent | ActivityEvent)]


def decoded(event: Event) -> dict[str, Any]:
    """The event as ingest sees it: written and read back by fastavro under its schema."""
    schema = fastavro.parse_schema(resolved_schema(event.schema_name.rsplit(".", 1)[-1]))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, event.to_avro())
    body.seek(0)
    return known_fields(type(event), fastavro.schemaless_reader(body, schema, None))


def reason(data: dict[str, Any], model: type[Event] = SubscriberEvent) -> str:
    with pytest.raises(InvalidEvent) as caught:
        screen(data, model)
    return str(caught.value)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: f"{e.event_type}-{e.event_id[:8]}")
def test_every_sample_passes_and_is_stored_as_the_model_writes_it(event: Event) -> None:
    event_id, payload = screen(decoded(event), type(event))
    assert event_id == event.event_id
    assert payload == event.model_dump_json()


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)),
    email=st.from_regex(r"[a-z0-9._%+-]{1,20}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True),
    reason_text=st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
)
def test_any_valid_event_is_stored_as_the_model_writes_it(moment: datetime, email: str, reason_text: str) -> None:
    event = parse_event(
        {
            "type": "subscriber",
            "event_id": "8ea5b524-481d-4143-83a5-2c4a03c1ac77",
            "account_id": "acct-1001",
            "occurred_at": moment.isoformat(),
            "source": "MAILING_LINK",
            "recipient": {"email": email},
            "action": "UNSUBSCRIBE",
            "reason": reason_text,
        }
    )
    assert screen(decoded(event), SubscriberEvent)[1] == event.model_dump_json()


def sample(model: type[Event]) -> dict[str, Any]:
    event = next(e for e in SAMPLES if type(e) is model and (model is SubscriberEvent or e.mailing))
    return decoded(event)


def test_nul_anywhere_is_named_by_its_path() -> None:
    data = sample(ActivityEvent)
    data["mailing"]["name"] = "Spring\x00"
    assert reason(data, ActivityEvent) == "mailing.name: must not contain NUL characters"


def test_text_that_only_looks_like_an_escaped_nul_is_stored() -> None:
    data = sample(SubscriberEvent)
    data["reason"] = "a literal \\u0000 in text"
    assert "\\\\u0000" in screen(data, SubscriberEvent)[1]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(account_id="A" * 65), "account_id: must have at most 64 characters"),
        (lambda d: d.update(account_id=None), "account_id: missing"),
        (lambda d: d.update(event_id="not-a-uuid"), "event_id: not a UUID"),
        (lambda d: d.update(occurred_at=datetime(2026, 3, 8)), "occurred_at: not an instant with a time zone"),
        (lambda d: d.update(recipient={"email": None, "integration_id": None, "record_type": None}),
         "recipient: needs at least one of email and integration_id"),
        (lambda d: d.update(recipient={"email": None, "integration_id": "X" * 321, "record_type": None}),
         "recipient.integration_id: must have at most 320 characters"),
        (lambda d: d.update(recipient={"email": "no-at-sign", "integration_id": None, "record_type": None}),
         "recipient.email: not a plausible email address (expected local@domain.tld)"),
    ],
)  # fmt: skip
def test_what_would_harm_the_ledger_or_a_crm_is_refused_with_the_field_and_reason(change, expected: str) -> None:
    data = sample(SubscriberEvent)
    change(data)
    assert reason(data) == expected
    assert "XXXX" not in expected and "no-at-sign" not in expected  # the reason, never the value


def test_a_mailing_id_longer_than_the_ledger_keeps_is_refused() -> None:
    data = sample(ActivityEvent)
    data["mailing"]["mailing_id"] = "M" * 65
    assert reason(data, ActivityEvent) == "mailing.mailing_id: must have at most 64 characters"


def test_the_rest_of_the_contract_is_left_to_the_model() -> None:
    """A subcode that does not fit its code harms neither the ledger nor a CRM call: the screen
    lets it through, and the model (built at flush) refuses it with the field named."""
    data = sample(ActivityEvent)
    data["code"] = "Sent" if data["code"] != "Sent" else "Opened"
    screen(data, ActivityEvent)
    with pytest.raises(ValueError, match="subcode"):
        ActivityEvent.model_validate(data)
