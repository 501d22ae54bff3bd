"""The pydantic models: what they accept, what they reject (and how they say so), keys,
dispatch, samples and the committed examples."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from writeback_dev.samples import (
    EXAMPLE_FILES,
    activity_samples,
    all_event_samples,
    community_samples,
    dead_letter_samples,
    ndjson,
    subscriber_samples,
)

from writeback.contract.events import (
    ACTIVITY_TOPIC,
    COMMUNITY_TOPIC,
    SUBSCRIBER_TOPIC,
    ActivityCode,
    ActivityEvent,
    ActivitySubcode,
    ClickTarget,
    CommunityListEvent,
    DeadLetter,
    MembershipChange,
    Recipient,
    ScopeKind,
    SubscriberAction,
    SubscriberEvent,
    SuppressionSubtype,
    parse_event,
    resolved_schema,
    validation_summary,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EVENT_ID = "8ea5b524-481d-4143-83a5-2c4a03c1ac77"


def activity(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": EVENT_ID,
        "account_id": "acct-1001",
        "occurred_at": "2026-03-08T14:30:00Z",
        "source": "MAILING_LINK",
        "recipient": {"email": "maria.lopez@example.org"},
        "code": "Sent",
        "subcode": "HardBounce",
    }
    data.update(overrides)
    return data


def subscriber(**overrides: Any) -> dict[str, Any]:
    data = activity(action="UNSUBSCRIBE")
    del data["code"], data["subcode"]
    data.update(overrides)
    return data


def problems(model: type, data: dict[str, Any]) -> dict[str, str]:
    """field path -> reason, for each problem the model reports."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    lines = validation_summary(caught.value).splitlines()
    return dict(line.split(": ", 1) for line in lines)


# --------------------------------------------------------------------------------------------
# Rejections name the field and the reason
# --------------------------------------------------------------------------------------------


def test_unknown_subcode() -> None:
    found = problems(ActivityEvent, activity(subcode="HardBounced"))
    assert "unknown ActivitySubcode 'HardBounced'" in found["subcode"]
    assert "HardBounce" in found["subcode"] and "UNKNOWN" not in found["subcode"]


def test_mismatched_code_and_subcode() -> None:
    found = problems(ActivityEvent, activity(code="Opened", subcode="HardBounce"))
    assert found == {"subcode": "subcode HardBounce belongs to code Sent, not Opened"}


def test_missing_email_and_integration_id() -> None:
    found = problems(ActivityEvent, activity(recipient={"record_type": "CONTACT"}))
    assert "at least one of email and integration_id" in found["recipient"]


def test_malformed_uuid() -> None:
    found = problems(SubscriberEvent, subscriber(event_id="not-a-uuid"))
    assert found == {"event_id": "'not-a-uuid' is not a valid UUID"}


def test_naive_timestamp() -> None:
    found = problems(SubscriberEvent, subscriber(occurred_at="2026-03-08T14:30:00"))
    assert "naive timestamp" in found["occurred_at"]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("account_id", 1001, "valid string"),
        ("occurred_at", "yesterday", "datetime"),
        ("action", 3, "must be a string naming a SubscriberAction"),
        ("recipient", "maria.lopez@example.org", "dictionary or instance of Recipient"),
    ],
)
def test_wrong_type(field: str, value: Any, reason: str) -> None:
    found = problems(SubscriberEvent, subscriber(**{field: value}))
    assert reason in found[field]


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (SubscriberEvent, subscriber(source="UNKNOWN"), "source"),
        (SubscriberEvent, subscriber(action="UNKNOWN"), "action"),
        (ActivityEvent, activity(code="UNKNOWN", subcode="UNKNOWN"), "subcode"),
        (
            SubscriberEvent,
            subscriber(recipient={"email": "a@example.org", "record_type": "UNKNOWN"}),
            "recipient.record_type",
        ),
    ],
)
def test_unknown_symbols_are_rejected_on_input(
    model: type, data: dict[str, Any], field: str
) -> None:
    assert "UNKNOWN is what an old reader sees" in problems(model, data)[field]


def test_implausible_email_is_rejected_without_echoing_it() -> None:
    found = problems(SubscriberEvent, subscriber(recipient={"email": "maria.lopez.example.org"}))
    assert found == {"recipient.email": "not a plausible email address (expected local@domain.tld)"}


def test_unknown_fields_are_rejected() -> None:
    """A typo in an optional field must not be silently dropped."""
    assert "reasn" in problems(SubscriberEvent, subscriber(reasn="moved"))


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (subscriber(action="SUPPRESS"), "suppression", "required when action is SUPPRESS"),
        (subscriber(suppression="Previous"), "suppression", "only with action SUPPRESS"),
        (
            subscriber(action="BAD_EMAIL", scope={"kind": "ALL_MAIL"}),
            "scope",
            "only with UNSUBSCRIBE",
        ),
        (subscriber(scope={"kind": "GROUP"}), "scope", "kind GROUP needs id"),
        (subscriber(scope={"kind": "ALL_MAIL", "id": "x"}), "scope", "takes no id"),
    ],
)
def test_subscriber_details_must_fit_the_action(
    data: dict[str, Any], field: str, reason: str
) -> None:
    assert reason in problems(SubscriberEvent, data)[field]


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (
            activity(click={"url": "https://example.org", "target": "LINK"}),
            "click",
            "only with code LinkClicked",
        ),
        (activity(open={"device": "iPhone"}), "open", "only with code Opened"),
        (activity(social={"network": "Facebook"}), "social", "only with code Social"),
        (activity(name="Annual Meeting"), "name", "only with code EventSignup or SurveySubmit"),
        (
            activity(code="EventSignup", subcode="EventSignup"),
            "name",
            "required for code EventSignup",
        ),
        (activity(code="Social", subcode="SocialShare"), "social", "required for SocialShare"),
        (
            activity(subcode="Clicked", click={"url": "", "target": "LINK"}),
            "click.url",
            "at least 1",
        ),
    ],
)
def test_activity_details_must_fit_the_code(data: dict[str, Any], field: str, reason: str) -> None:
    if data["subcode"] != "HardBounce":
        data.pop("code")
    assert reason in problems(ActivityEvent, data)[field]


def test_dead_letter_failure_times_in_order() -> None:
    sample = dead_letter_samples()[0].model_dump()
    sample["last_failure_at"] = sample["first_failure_at"] - timedelta(seconds=1)
    assert problems(DeadLetter, sample) == {"last_failure_at": "earlier than first_failure_at"}


def test_validation_error_is_a_value_error_and_its_summary_has_no_input() -> None:
    with pytest.raises(ValueError) as caught:
        SubscriberEvent.model_validate(subscriber(recipient={"email": "secret@@example.org"}))
    assert isinstance(caught.value, ValidationError)
    assert "secret" not in validation_summary(caught.value)


# --------------------------------------------------------------------------------------------
# Normalisation and behaviour
# --------------------------------------------------------------------------------------------


def test_occurred_at_is_converted_to_utc_and_milliseconds() -> None:
    event = SubscriberEvent.model_validate(
        subscriber(occurred_at="2026-03-08T09:30:00.123456-05:00")
    )
    assert event.occurred_at == datetime(2026, 3, 8, 14, 30, 0, 123000, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


@settings(max_examples=50, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.timezones()
    )
)
def test_any_aware_time_keeps_its_instant_to_the_millisecond(moment: datetime) -> None:
    event = SubscriberEvent.model_validate(subscriber(occurred_at=moment))
    assert event.occurred_at.tzinfo is UTC
    assert timedelta(0) <= moment - event.occurred_at < timedelta(milliseconds=1)
    assert SubscriberEvent.from_avro(event.to_avro()) == event


def test_event_id_is_canonicalised() -> None:
    event = SubscriberEvent.model_validate(subscriber(event_id=EVENT_ID.upper()))
    assert event.event_id == EVENT_ID


def test_code_is_implied_by_the_subcode() -> None:
    data = activity()
    del data["code"]
    assert ActivityEvent.model_validate(data).code == ActivityCode["Sent"]


def test_models_are_frozen() -> None:
    event = subscriber_samples()[0]
    with pytest.raises(ValidationError, match="frozen"):
        event.reason = "changed"  # type: ignore[misc]


def test_keys() -> None:
    with_id = Recipient(email="J.Chen@Example.com", integration_id="0035g00000XyZ12AAB")
    email_only = Recipient(email="Alex.Kim@Example.org")
    assert with_id.key() == "0035g00000XyZ12AAB"
    assert email_only.key() == "alex.kim@example.org"
    event = SubscriberEvent.model_validate(subscriber(recipient=email_only))
    assert event.key() == "acct-1001:alex.kim@example.org"
    community = community_samples()[0]
    assert community.key() == f"{community.account_id}:{community.legacy_contact_key}"


def test_community_events_carry_malformed_emails() -> None:
    """The sync reports invalid addresses as a reason counts differ, so they must get through."""
    data = community_samples()[0].model_dump()
    data["email"] = "not an address"
    assert CommunityListEvent.model_validate(data).email == "not an address"


def test_to_avro_uses_plain_values() -> None:
    record = activity_samples()[0].to_avro()
    assert type(record["code"]) is str and type(record["source"]) is str
    assert record["occurred_at"].tzinfo is not None
    dead = dead_letter_samples()[0].to_avro()
    assert isinstance(dead["original"], list) and isinstance(dead["original"][0]["value"], bytes)


def test_dead_letter_json_round_trip_keeps_bytes() -> None:
    dead = dead_letter_samples()[0]
    assert DeadLetter.model_validate_json(dead.model_dump_json()) == dead
    assert dead.original[0].value[:1] == b"\x00"
    assert dead.topic == "writeback.dlq.salesforce"


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "topic", "model"),
    [
        ("subscriber", SUBSCRIBER_TOPIC, SubscriberEvent),
        ("activity", ACTIVITY_TOPIC, ActivityEvent),
        ("community", COMMUNITY_TOPIC, CommunityListEvent),
    ],
)
def test_parse_event_by_type_or_topic(kind: str, topic: str, model: type) -> None:
    sample = next(e for e in all_event_samples() if isinstance(e, model))
    data = sample.to_json()
    assert data["type"] == kind == model.event_type and model.topic == topic
    assert parse_event(data) == sample
    assert parse_event(data, topic=topic) == sample
    assert parse_event({k: v for k, v in data.items() if k != "type"}, topic=topic) == sample


def test_parse_event_errors() -> None:
    data = activity_samples()[0].to_json()
    with pytest.raises(ValueError, match="type: unknown event type 'click'"):
        parse_event({**data, "type": "click"})
    with pytest.raises(ValueError, match="do not belong on topic"):
        parse_event(data, topic=SUBSCRIBER_TOPIC)
    with pytest.raises(ValueError, match="type: missing"):
        parse_event({k: v for k, v in data.items() if k != "type"})
    with pytest.raises(ValueError, match="not an event topic"):
        parse_event(data, topic="writeback.nope")
    with pytest.raises(ValueError, match="type: unknown event type"):
        parse_event({**data, "type": ["activity"]})
    with pytest.raises(ValueError, match="event: expected a JSON object, got list"):
        parse_event([data])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Samples cover the contract; examples are generated from them
# --------------------------------------------------------------------------------------------


def _symbols(enum: Any) -> set[str]:
    return {m.value for m in enum if m.value != "UNKNOWN"}


def test_samples_cover_every_symbol() -> None:
    activities = activity_samples()
    subscribers = subscriber_samples()
    assert {e.subcode for e in activities} == _symbols(ActivitySubcode)
    assert {e.code for e in activities} == _symbols(ActivityCode)
    assert {e.click.target for e in activities if e.click} == _symbols(ClickTarget)
    assert {e.action for e in subscribers} == _symbols(SubscriberAction)
    suppressed = [e.suppression for e in subscribers if e.action == "SUPPRESS"]
    assert sorted(suppressed) == sorted(_symbols(SuppressionSubtype))
    assert {e.scope.kind for e in subscribers if e.scope} == _symbols(ScopeKind)
    assert {e.change for e in community_samples()} == _symbols(MembershipChange)


def test_samples_are_deterministic_and_unique() -> None:
    first, second = all_event_samples(), all_event_samples()
    assert first == second
    assert len({e.event_id for e in first}) == len(first)


def test_samples_use_three_accounts_and_fake_addresses() -> None:
    samples = all_event_samples()
    assert len({e.account_id for e in samples}) == 3
    emails = {e.recipient.email for e in samples if not isinstance(e, CommunityListEvent)}
    emails |= {e.email for e in community_samples()}
    assert all(str(e).lower().endswith(("@example.org", "@example.com")) for e in emails)


@pytest.mark.parametrize("name", sorted(EXAMPLE_FILES))
def test_committed_examples_are_the_generated_samples(name: str) -> None:
    """Regenerate with `python -m writeback_dev.samples examples/` when this fails."""
    text = (EXAMPLES_DIR / name).read_text(encoding="utf-8")
    assert text == ndjson(EXAMPLE_FILES[name]())


@pytest.mark.parametrize("name", sorted(EXAMPLE_FILES))
def test_every_example_line_parses(name: str) -> None:
    samples = EXAMPLE_FILES[name]()
    lines = (EXAMPLES_DIR / name).read_text(encoding="utf-8").splitlines()
    assert [parse_event(json.loads(line)) for line in lines] == list(samples)
    for line in lines:
        occurred = json.loads(line)["occurred_at"]
        assert occurred.endswith("Z") or occurred[-6] in "+-", "timestamps carry an offset"


# --------------------------------------------------------------------------------------------
# Writer schemas whose records can skip from_avro's filtering of unknown fields
# --------------------------------------------------------------------------------------------


def _add_field(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A copy of `schema` with an optional field added in the record reached through `path`."""
    schema = json.loads(json.dumps(schema))
    record = schema
    for name in path:
        field = next(f for f in record["fields"] if f["name"] == name)
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        record = next(t for t in types if isinstance(t, dict) and t.get("type") == "record")
    record["fields"].append({"name": "added_later", "type": ["null", "string"], "default": None})
    return schema


@pytest.mark.parametrize("model", [SubscriberEvent, ActivityEvent, CommunityListEvent])
def test_every_field_of_our_own_schemas_is_known(model):
    assert model.knows_every_field_of(fastavro.parse_schema(resolved_schema(model.__name__)))


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (SubscriberEvent, ()),
        (SubscriberEvent, ("recipient",)),
        (SubscriberEvent, ("scope",)),
        (ActivityEvent, ("mailing",)),
        (ActivityEvent, ("click",)),
        (CommunityListEvent, ()),
    ],
)
def test_a_writer_with_a_field_the_model_lacks_at_any_level_is_not_known(model, path):
    newer = _add_field(resolved_schema(model.__name__), path)
    assert not model.knows_every_field_of(fastavro.parse_schema(newer))
