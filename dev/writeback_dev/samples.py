"""Sample events: one valid event for every symbol of the contract, enumerated from the schemas.

Tests round-trip every sample through Avro, and `examples/*.ndjson` (what platform teams copy
from) is generated from here, so a symbol added to a schema gets a sample and an example without
anyone remembering to write one. Ids are uuid5 and times fixed, so regenerating the examples
changes nothing unless the contract did.

All data is fake: example.org / example.com addresses and made-up CRM ids.

Regenerate the examples with `python -m writeback_dev.samples examples/`.
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro

from writeback.contract.events import (
    UNKNOWN,
    ActivityEvent,
    Click,
    ClickTarget,
    CommunityListEvent,
    DeadLetter,
    ErrorClass,
    Event,
    Mailing,
    MembershipChange,
    OpenDetails,
    OriginalRecord,
    Recipient,
    RecordType,
    ScopeKind,
    SocialDetails,
    Source,
    SubscriberAction,
    SubscriberEvent,
    SubscriptionScope,
    enum_symbols,
    parsed_schema,
)
from writeback.contract.taxonomy import code_of

_SAMPLE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://example.org/writeback/samples")
BASE_TIME = datetime(2026, 3, 8, 14, 30, tzinfo=UTC)

# Three accounts, one per CRM family, so examples show each CRM's identifiers.
NETFORUM_ACCOUNT = "acct-1001"
SALESFORCE_ACCOUNT = "acct-2002"
PERSONIFY_ACCOUNT = "acct-3003"

NETFORUM_MEMBER = Recipient(
    email="maria.lopez@example.org",
    integration_id="6f1d2c3a-4b5e-4f60-8a71-92b3c4d5e6f7",  # netFORUM customer key (cst_key)
)
NETFORUM_EMAIL_ONLY = Recipient(email="Alex.Kim@Example.org")  # no Custom Member ID yet
SALESFORCE_CONTACT = Recipient(
    email="j.chen@example.com", integration_id="0035g00000XyZ12AAB", record_type=RecordType.CONTACT
)
SALESFORCE_LEAD = Recipient(
    email="pat.okafor@example.com", integration_id="00Q5g00000LmN34EAC", record_type=RecordType.LEAD
)
PERSONIFY_CUSTOMER = Recipient(
    email="sam.rivera@example.org",
    integration_id="000000123456",  # Master Customer ID
)

#: (account, recipient) pairs that samples cycle through.
AUDIENCE: tuple[tuple[str, Recipient], ...] = (
    (NETFORUM_ACCOUNT, NETFORUM_MEMBER),
    (SALESFORCE_ACCOUNT, SALESFORCE_CONTACT),
    (PERSONIFY_ACCOUNT, PERSONIFY_CUSTOMER),
    (SALESFORCE_ACCOUNT, SALESFORCE_LEAD),
    (NETFORUM_ACCOUNT, NETFORUM_EMAIL_ONLY),
)

SPRING_NEWSLETTER = Mailing(
    mailing_id="mlg-58213",
    name="Spring Member Newsletter",
    send_date=datetime(2026, 3, 8, 13, 0, tzinfo=UTC),
)

# Codes whose activity happens inside a mailing (or SMS / fax message).
_MAILING_CODES = frozenset({"Opened", "Sent", "LinkClicked", "FaxSent", "SmsSent", "Blocked"})
_SOURCE_BY_CODE: Mapping[str, Source] = {
    "Opened": Source.MAILING_LINK,
    "LinkClicked": Source.MAILING_LINK,
    "LandingPageSubmit": Source.CAMPAIGN,
    "GoalSuccess": Source.CAMPAIGN,
    "Sent": Source.CAMPAIGN,
    "FaxSent": Source.CAMPAIGN,
    "SmsSent": Source.CAMPAIGN,
    "Blocked": Source.CAMPAIGN,
}
_SOURCE_BY_SUBCODE: Mapping[str, Source] = {
    "SMSSTOPfromPhoneNumber": Source.SMS_REPLY,
    "SocialShare": Source.MAILING_LINK,
}
_SOURCE_BY_SUPPRESSION: Mapping[str, Source] = {
    "ManualSuppress": Source.ADMIN,
    "ListUploadSuppress": Source.LIST_UPLOAD,
    "CampaignSuppress": Source.CAMPAIGN,
    "DomainSuppress": Source.SCHEDULED_TASK,
    "UnsubscribedAcrossAccts": Source.SCHEDULED_TASK,
    "SuppressedAcrossAccts": Source.SCHEDULED_TASK,
    "ManageSubscription": Source.SUBSCRIPTION_PAGE,
    "UnsubFromAllLink": Source.SUBSCRIPTION_PAGE,
    "Previous": Source.ADMIN,
    "DetailUnavailable": Source.ADMIN,
}
_SOURCE_BY_ACTION: Mapping[str, Source] = {
    "UNSUBSCRIBE": Source.MAILING_LINK,
    "RESUBSCRIBE": Source.ADMIN,
    "BAD_EMAIL": Source.ACCOUNT_RULE,
    "SUBSCRIBE": Source.SUBSCRIPTION_PAGE,
}
_SCOPES: Mapping[str, SubscriptionScope] = {
    "ALL_MAIL": SubscriptionScope(kind=ScopeKind.ALL_MAIL),
    "GROUP_CATEGORY": SubscriptionScope(
        kind=ScopeKind.GROUP_CATEGORY, id="GC-NEWS", name="Newsletters"
    ),
    "GROUP": SubscriptionScope(kind=ScopeKind.GROUP, id="G-ANNMTG", name="Annual Meeting Updates"),
    "MESSAGE_CATEGORY": SubscriptionScope(
        kind=ScopeKind.MESSAGE_CATEGORY, id="MC-PROMO", name="Promotions"
    ),
}


def _symbols(enum_name: str) -> list[str]:
    return [symbol for symbol in enum_symbols(enum_name) if symbol != UNKNOWN]


def _event_id(*parts: str) -> str:
    return str(uuid.uuid5(_SAMPLE_NAMESPACE, ":".join(parts)))


def _at(index: int) -> datetime:
    return BASE_TIME + timedelta(minutes=index)


def _activity(index: int, subcode: str, click: Click | None = None) -> ActivityEvent:
    code = code_of(subcode)
    account, recipient = AUDIENCE[index % len(AUDIENCE)]
    social = None
    if code == "Social":
        network = "Facebook" if subcode.startswith("Facebook") else "Twitter"
        social = SocialDetails(network="LinkedIn" if subcode == "SocialShare" else network)
    named = {"EventSignup": "Annual Meeting 2026", "SurveySubmit": "Member Satisfaction Survey"}
    return ActivityEvent(
        event_id=_event_id("activity", subcode, click.target if click else ""),
        account_id=account,
        occurred_at=_at(index),
        source=_SOURCE_BY_SUBCODE.get(subcode, _SOURCE_BY_CODE.get(code, Source.API)),
        recipient=recipient,
        code=code,
        subcode=subcode,
        mailing=SPRING_NEWSLETTER if code in _MAILING_CODES or subcode == "SocialShare" else None,
        open=OpenDetails(device="iPhone", client="Apple Mail", country="United States")
        if code == "Opened"
        else None,
        click=click,
        social=social,
        name=named.get(code),
    )


def _clicks() -> list[Click]:
    urls = {
        "LINK": "https://www.example.org/events/annual-meeting",
        "ADVERTISEMENT": "https://sponsor.example.com/spring-offer",
    }
    return [
        Click(url=urls.get(target, "https://www.example.org/"), target=ClickTarget(target))
        for target in _symbols("ClickTarget")
    ]


def activity_samples() -> list[ActivityEvent]:
    """One event per ActivitySubcode, and a LinkClicked per ClickTarget."""
    samples: list[ActivityEvent] = []
    for subcode in _symbols("ActivitySubcode"):
        clicks: list[Click | None] = (
            list(_clicks()) if code_of(subcode) == "LinkClicked" else [None]
        )
        for click in clicks:
            samples.append(_activity(len(samples), subcode, click))
    return samples


def _subscriber(
    index: int,
    action: str,
    variant: str = "",
    *,
    audience: tuple[str, Recipient] | None = None,
    **details: object,
) -> SubscriberEvent:
    account, recipient = audience or AUDIENCE[index % len(AUDIENCE)]
    return SubscriberEvent.model_validate(
        {
            "event_id": _event_id("subscriber", action, variant),
            "account_id": account,
            "occurred_at": _at(index),
            "source": details.pop("source", _SOURCE_BY_ACTION.get(action, Source.ADMIN)),
            "recipient": recipient,
            "action": action,
            **details,
        }
    )


def subscriber_samples() -> list[SubscriberEvent]:
    """Every SubscriberAction; SUPPRESS once per SuppressionSubtype; UNSUBSCRIBE per ScopeKind."""
    samples: list[SubscriberEvent] = []
    for action in _symbols("SubscriberAction"):
        if action == SubscriberAction.SUPPRESS:
            for subtype in _symbols("SuppressionSubtype"):
                source = _SOURCE_BY_SUPPRESSION.get(subtype, Source.ACCOUNT_RULE)
                samples.append(
                    _subscriber(len(samples), action, subtype, suppression=subtype, source=source)
                )
        elif action == SubscriberAction.UNSUBSCRIBE:
            samples.append(_subscriber(len(samples), action, reason="Too many emails"))
            personify = (PERSONIFY_ACCOUNT, PERSONIFY_CUSTOMER)
            for kind in _symbols("ScopeKind"):
                scope = _SCOPES.get(kind) or SubscriptionScope(kind=ScopeKind(kind), id=f"{kind}-1")
                samples.append(
                    _subscriber(len(samples), action, kind, audience=personify, scope=scope)
                )
        else:
            samples.append(_subscriber(len(samples), action))
    return samples


def community_samples() -> list[CommunityListEvent]:
    """A community list membership change per MembershipChange (seed 003, inbound)."""
    members = (
        ("6f1d2c3a-4b5e-4f60-8a71-92b3c4d5e6f7", "maria.lopez@example.org"),
        ("a7e9b0c1-d2e3-4f45-9a67-b8c9d0e1f203", "lee.hart@example.org"),
    )
    return [
        CommunityListEvent(
            event_id=_event_id("community", change),
            account_id=NETFORUM_ACCOUNT,
            occurred_at=_at(index),
            list_id="lst-4471",
            list_name="Informz Has Started Discussion Thread",
            change=MembershipChange(change),
            legacy_contact_key=members[index % len(members)][0],
            email=members[index % len(members)][1],
        )
        for index, change in enumerate(_symbols("MembershipChange"))
    ]


def confluent_frame(event: Event, schema_id: int) -> bytes:
    """Schema Registry wire format (magic 0, 4-byte big-endian schema id, Avro body).

    Only for building realistic dead letters here; the service's own serde does the real work.
    """
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed_schema(event.schema_name), event.to_avro())
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def dead_letter_samples() -> list[DeadLetter]:
    """A dead letter per ErrorClass, each wrapping the framed bytes of a sample event."""
    event = activity_samples()[1]
    original = OriginalRecord(
        topic=event.topic,
        partition=3,
        offset=1_204_551,
        key=event.key().encode(),
        value=confluent_frame(event, schema_id=7),
    )
    return [
        DeadLetter(
            writeback_id=_event_id("writeback", error_class),
            connection_id="conn-salesforce-1",
            account_id=event.account_id,
            crm_kind="salesforce",
            error_class=ErrorClass(error_class),
            error_code=f"salesforce.{error_class.lower()}",
            error_message=f"sample {error_class.lower().replace('_', ' ')} failure",
            attempts=5,
            first_failure_at=_at(60),
            last_failure_at=_at(90),
            replay_count=index,
            original=(original,),
        )
        for index, error_class in enumerate(_symbols("ErrorClass"))
    ]


def all_event_samples() -> list[Event]:
    """Every sample event, subscriber then activity then community."""
    return [*subscriber_samples(), *activity_samples(), *community_samples()]


#: Example file name -> the samples it holds.
EXAMPLE_FILES: Mapping[str, Callable[[], Sequence[Event]]] = {
    "subscriber-events.ndjson": subscriber_samples,
    "activity-events.ndjson": activity_samples,
    "community-list-events.ndjson": community_samples,
}


def ndjson(events: Iterable[Event]) -> str:
    """One JSON object per line, with the `"type"` discriminator `parse_event` reads."""
    return "".join(json.dumps(event.to_json()) + "\n" for event in events)


def write_examples(directory: Path) -> list[Path]:
    """Write the example files into `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, samples in EXAMPLE_FILES.items():
        path = directory / name
        path.write_text(ndjson(samples()), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for path in write_examples(Path(args[0] if args else "examples")):
        print(path)


if __name__ == "__main__":
    main()
