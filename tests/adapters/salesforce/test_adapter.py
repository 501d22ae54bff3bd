"""The Salesforce adapter against the simulator over loopback HTTP: seed 002 and 001 rules,
per-record outcomes, ordering, idempotency and transient failures."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from writeback_dev.simulators.salesforce import SalesforceSim

from writeback.adapters.base import Disposition, ErrorKind, Outcome, Writeback
from writeback.adapters.salesforce import Config, SalesforceAdapter, id18
from writeback.contract.events import ActivityEvent, parse_event
from writeback.ledger.rows import WritebackClass

ZONE = "America/New_York"
WINTER = datetime(2026, 1, 15, 19, 5, 9, tzinfo=UTC)  # 02:05:09 PM EST
DST_DAY = datetime(2026, 3, 8, 14, 30, tzinfo=UTC)  # clocks went forward at 2 AM: 10:30 AM EDT
EMAIL = "pat.doe@example.com"
MAILING = {"mailing_id": "m-1", "name": "March Newsletter", "send_date": "2026-03-08T13:00:00Z"}


def _writeback(
    event_type: str, who: str | None, occurred: datetime, record_type: str | None, **fields: Any
) -> Writeback:
    event = {
        "type": event_type,
        "event_id": str(uuid.uuid4()),
        "account_id": "acct-1",
        "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
        "source": "MAILING_LINK",
        "recipient": {"email": EMAIL, "integration_id": who, "record_type": record_type},
        **fields,
    }
    wb_class = WritebackClass.SUBSCRIBER if event_type == "subscriber" else WritebackClass.ACTIVITY
    return Writeback(
        id=str(uuid.uuid4()),
        account_id="acct-1",
        connection_id="sf-1",
        wb_class=wb_class,
        recipient_key=who or EMAIL,
        occurred_at=occurred,
        event=parse_event(event),
    )


def subscriber(
    action: str,
    who: str | None,
    *,
    occurred: datetime = WINTER,
    record_type: str | None = None,
    reason: str | None = None,
) -> Writeback:
    suppression = "ManualSuppress" if action == "SUPPRESS" else None
    return _writeback(
        "subscriber", who, occurred, record_type, action=action, reason=reason, suppression=suppression
    )


def activity(
    code: str, subcode: str, who: str | None, *, occurred: datetime = DST_DAY, **fields: Any
) -> Writeback:
    base = {"code": code, "subcode": subcode, "mailing": MAILING, "open": None, "click": None, "name": None}
    return _writeback("activity", who, occurred, None, **{**base, **fields})


def seed_pairs(wb: Writeback) -> tuple[str, str] | None:
    """A stand-in for writeback.contract.taxonomy.tracking_pair: seed 001 labels for a few events."""
    if isinstance(wb.event, ActivityEvent):
        return str(wb.event.code), str(wb.event.subcode)
    return {"UNSUBSCRIBE": ("Unsubscribed", "Unsubscribed"), "SUBSCRIBE": ("Subscribed", "Subscribed")}.get(
        str(wb.event.action)
    )


@pytest.fixture
def connect(sim: SalesforceSim, monkeypatch) -> Iterator[Callable[..., SalesforceAdapter]]:
    made: list[SalesforceAdapter] = []

    def make(**overrides: Any) -> SalesforceAdapter:
        tracking_pair = overrides.pop("tracking_pair", None)
        secret = f"TEST_SF_SECRET_{len(made)}"
        monkeypatch.setenv(secret, overrides.pop("client_secret", sim.client_secret))
        settings = {
            "login_url": sim.login_url,
            "client_id": sim.client_id,
            "client_secret": {"env": secret},
            "timeout_s": 2.0,
            **overrides,
        }
        made.append(SalesforceAdapter(Config(**settings), time_zone=ZONE, tracking_pair=tracking_pair))
        return made[-1]

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def adapter(connect: Callable[..., SalesforceAdapter]) -> SalesforceAdapter:
    return connect()


def dispositions(outcomes: list[Outcome]) -> list[str]:
    return [o.disposition.value for o in outcomes]


def flag(sim: SalesforceSim, record_id: str) -> bool:
    record = sim.record(record_id)
    assert record is not None
    return bool(record["HasOptedOutOfEmail"])


# -- seed 002: notes and Email Opt Out --------------------------------------------------------------


def test_unsubscribe_writes_the_seed_note_in_the_connection_zone_and_sets_the_flag(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    contact = sim.add_contact(email=EMAIL)
    wb = subscriber("UNSUBSCRIBE", contact, record_type="CONTACT")
    [outcome] = adapter.write([wb])
    [note] = sim.notes_for(contact)
    assert outcome == Outcome.completed(wb.id, note["Id"])
    assert note["Title"] == "Contact unsubscribed from Informz on 01/15/26 02:05:09 PM"
    assert (
        note["Body"]
        == f"Contact unsubscribed from Informz on 01/15/26 02:05:09 PM\nInformz writeback id: {wb.id}"
    )
    assert flag(sim, contact) is True


def test_lead_note_and_a_dst_day_timestamp(sim: SalesforceSim, adapter: SalesforceAdapter) -> None:
    lead = sim.add_lead()
    adapter.write([subscriber("UNSUBSCRIBE", lead[:15], occurred=DST_DAY)])  # no record_type: the 00Q prefix
    assert [n["Title"] for n in sim.notes_for(lead)] == [
        "Lead unsubscribed from Informz on 03/08/26 10:30:00 AM"
    ]
    assert flag(sim, lead) is True


def test_reason_is_appended_and_bad_email_is_an_unsubscribe_with_reason_bad_email(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    a, b = sim.add_contact(), sim.add_lead()
    outcomes = adapter.write(
        [
            subscriber("UNSUBSCRIBE", a, reason="Too many emails"),
            subscriber("BAD_EMAIL", b, occurred=WINTER + timedelta(hours=12), reason="HardBounce"),
        ]
    )
    assert dispositions(outcomes) == ["completed", "completed"]
    assert sim.notes_for(a)[0]["Body"].splitlines()[:2] == [
        "Contact unsubscribed from Informz on 01/15/26 02:05:09 PM",
        "Reason: Too many emails",
    ]
    [bad] = sim.notes_for(b)
    assert bad["Title"] == "Lead unsubscribed from Informz on 01/16/26 02:05:09 AM"
    assert bad["Body"].splitlines()[1] == "Reason: Bad Email"
    assert flag(sim, a) and flag(sim, b)


def test_resubscribe_clears_the_flag(sim: SalesforceSim, adapter: SalesforceAdapter) -> None:
    contact = sim.add_contact(HasOptedOutOfEmail=True)
    [outcome] = adapter.write([subscriber("RESUBSCRIBE", contact)])
    assert outcome.disposition is Disposition.COMPLETED
    assert [n["Title"] for n in sim.notes_for(contact)] == [
        "Contact resubscribed to Informz on 01/15/26 02:05:09 PM"
    ]
    assert flag(sim, contact) is False


def test_suppressed_flag_is_left_alone_but_notes_are_written(
    sim: SalesforceSim, connect: Callable[..., SalesforceAdapter]
) -> None:
    opted_in, opted_out = sim.add_contact(), sim.add_contact(HasOptedOutOfEmail=True)
    adapter = connect(suppress_email_opt_out=True)
    outcomes = adapter.write([subscriber("UNSUBSCRIBE", opted_in), subscriber("RESUBSCRIBE", opted_out)])
    assert dispositions(outcomes) == ["completed", "completed"]
    assert (flag(sim, opted_in), flag(sim, opted_out)) == (False, True)
    assert len(sim.notes_for(opted_in)) == len(sim.notes_for(opted_out)) == 1
    assert sim.calls("PATCH", "/composite/sobjects") == []


def test_subscribe_and_suppress_are_counted_not_written(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    contact = sim.add_contact()
    outcomes = adapter.write([subscriber("SUBSCRIBE", contact), subscriber("SUPPRESS", contact)])
    assert dispositions(outcomes) == ["completed", "completed"]
    assert {o.error_code for o in outcomes} == {"ACTION_NOT_WRITTEN"}
    assert sim.records("Note") == [] and sim.request_log == []


# -- ordering -------------------------------------------------------------------------------------


def test_unsubscribe_then_resubscribe_in_one_batch_ends_cleared_with_notes_in_order(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    contact, other = sim.add_contact(), sim.add_contact()
    batch = [
        subscriber("UNSUBSCRIBE", contact),
        subscriber("UNSUBSCRIBE", other),
        subscriber("RESUBSCRIBE", contact, occurred=WINTER + timedelta(minutes=1)),
    ]
    assert dispositions(adapter.write(batch)) == ["completed"] * 3
    assert flag(sim, contact) is False and flag(sim, other) is True
    assert [n["Title"].split(" Informz")[0] for n in sim.notes_for(contact)] == [
        "Contact unsubscribed from",
        "Contact resubscribed to",
    ]


def test_resubscribe_then_unsubscribe_in_one_batch_ends_set(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    contact = sim.add_contact(HasOptedOutOfEmail=True)
    adapter.write(
        [
            subscriber("RESUBSCRIBE", contact),
            subscriber("UNSUBSCRIBE", contact, occurred=WINTER + timedelta(1)),
        ]
    )
    assert flag(sim, contact) is True
    assert [n["Title"][:20] for n in sim.notes_for(contact)] == [
        "Contact resubscribed",
        "Contact unsubscribed",
    ]


def test_a_locked_row_retries_and_holds_back_that_recipients_later_writebacks(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    contact, other = sim.add_contact(), sim.add_contact()
    sim.lock_next_records(1)  # the first record written: the contact's flag update
    outcomes = adapter.write(
        [
            subscriber("UNSUBSCRIBE", contact),
            subscriber("UNSUBSCRIBE", other),
            subscriber("RESUBSCRIBE", contact),
        ]
    )
    assert [(o.disposition.value, o.error_code) for o in outcomes] == [
        ("retry", "UNABLE_TO_LOCK_ROW"),
        ("completed", None),
        ("retry", "ORDER_BLOCKED"),
    ]
    assert sim.notes_for(contact) == [] and flag(sim, contact) is False
    assert dispositions(adapter.write([subscriber("UNSUBSCRIBE", contact)])) == ["completed"]


# -- mailing activity ------------------------------------------------------------------------------


def test_sent_and_opened_become_tasks_and_clicks_are_counted(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    contact = sim.add_contact()
    sent = activity("Sent", "Delivered", contact)
    opened = activity(
        "Opened", "Opened", contact, open={"device": "Mobile", "client": "Apple Mail", "country": "US"}
    )
    clicked = activity(
        "LinkClicked", "Clicked", contact, click={"url": "https://x.org/?e=" + EMAIL, "target": "LINK"}
    )
    bounced = activity("Sent", "HardBounce", contact)
    outcomes = adapter.write([sent, opened, clicked, bounced])
    assert dispositions(outcomes) == ["completed"] * 4
    assert [o.error_code for o in outcomes] == [None, None, "ACTIVITY_NOT_WRITTEN", "ACTIVITY_NOT_WRITTEN"]
    tasks = {t["Writeback_Id__c"]: t for t in sim.tasks_for(contact)}
    assert set(tasks) == {sent.id, opened.id}
    assert outcomes[0].crm_ids == (tasks[sent.id]["Id"],)
    assert tasks[sent.id]["Subject"] == "Informz mailing sent - March Newsletter"
    assert (tasks[sent.id]["Activity_Group__c"], tasks[sent.id]["Activity__c"]) == ("Sent", "Delivered")
    assert tasks[sent.id]["ActivityDate"] == "2026-03-08"
    assert tasks[sent.id]["Status"] == "Completed"
    assert tasks[opened.id]["Subject"] == "Informz mailing opened - March Newsletter"
    assert "Opened with: Mobile | Apple Mail | US" in tasks[opened.id]["Description"]
    assert "Mailing sent: 03/08/26 09:00:00 AM" in tasks[opened.id]["Description"]


# -- batching, partial failure, idempotency -------------------------------------------------------


def test_201_writebacks_take_two_calls_per_step(sim: SalesforceSim, adapter: SalesforceAdapter) -> None:
    contacts = [sim.add_contact() for _ in range(201)]
    outcomes = adapter.write([subscriber("UNSUBSCRIBE", c) for c in contacts])
    assert dispositions(outcomes) == ["completed"] * 201
    assert [c.records for c in sim.calls("POST", "/composite/sobjects")] == [200, 1]
    assert [c.records for c in sim.calls("PATCH", "/composite/sobjects")] == [200, 1]
    assert len(sim.records("Note")) == 201


def test_one_unknown_id_in_200_fails_alone_with_its_salesforce_code(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    contacts = [sim.add_contact() for _ in range(199)]
    unknown = id18("003Hs00000ZZZZZ")
    batch = [subscriber("UNSUBSCRIBE", c) for c in contacts]
    batch.insert(57, subscriber("UNSUBSCRIBE", unknown))
    outcomes = adapter.write(batch)
    assert dispositions(outcomes).count("completed") == 199
    assert outcomes[57].disposition is Disposition.FAILED
    assert outcomes[57].error_code == "INVALID_CROSS_REFERENCE_KEY"
    assert len(sim.records("Note")) == 199


def test_deleted_recipient_fails_permanently(sim: SalesforceSim, adapter: SalesforceAdapter) -> None:
    contact = sim.add_contact()
    sim.delete(contact)
    [outcome] = adapter.write([subscriber("UNSUBSCRIBE", contact)])
    assert (outcome.disposition, outcome.error_code) == (Disposition.FAILED, "ENTITY_IS_DELETED")


def test_writing_the_same_batch_twice_leaves_one_note_and_one_task_each(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    contacts = [sim.add_contact() for _ in range(3)]
    batch = [subscriber("UNSUBSCRIBE", c) for c in contacts] + [
        activity("Sent", "Delivered", c) for c in contacts
    ]
    first = adapter.write(batch)
    flag_calls = len(sim.calls("PATCH", "/composite/sobjects"))
    second = adapter.write(batch)
    assert dispositions(first) == dispositions(second) == ["completed"] * 6
    assert [o.crm_ids for o in first] == [o.crm_ids for o in second]
    assert len(sim.records("Note")) == 3 and len(sim.records("Task")) == 3
    assert len(sim.calls("PATCH", "/composite/sobjects")) == flag_calls  # a replay never re-sets a flag


def test_replaying_an_old_unsubscribe_does_not_undo_a_later_resubscribe(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    contact = sim.add_contact()
    unsubscribe = subscriber("UNSUBSCRIBE", contact)
    adapter.write([unsubscribe])
    adapter.write([subscriber("RESUBSCRIBE", contact, occurred=WINTER + timedelta(days=1))])
    adapter.write([unsubscribe])
    assert flag(sim, contact) is False
    assert len(sim.notes_for(contact)) == 2


def test_a_timed_out_write_that_landed_is_not_duplicated_on_retry(
    sim: SalesforceSim, connect: Callable[..., SalesforceAdapter]
) -> None:
    adapter = connect(timeout_s=0.3)
    contact = sim.add_contact()
    batch = [subscriber("UNSUBSCRIBE", contact)]
    sim.hang_next(seconds=0.8, method="POST", path_suffix="/composite/sobjects")  # the note insert
    [outcome] = adapter.write(batch)
    assert (outcome.disposition, outcome.error_code) == (Disposition.RETRY, "TIMEOUT")
    sim.wait_idle()
    assert len(sim.notes_for(contact)) == 1  # it landed after the client gave up
    assert dispositions(adapter.write(batch)) == ["completed"]
    assert len(sim.notes_for(contact)) == 1


# -- seed 001: tracking -----------------------------------------------------------------------------


def test_tracking_writes_every_pair_with_activity_group_and_activity(
    sim: SalesforceSim, connect: Callable[..., SalesforceAdapter]
) -> None:
    adapter = connect(tracking_pair=seed_pairs)
    contact, lead = sim.add_contact(), sim.add_lead()
    batch = [
        activity("Sent", "HardBounce", contact),
        activity("LinkClicked", "Clicked", lead, click={"url": "https://x.org", "target": "ADVERTISEMENT"}),
        activity("EventSignup", "EventSignup", contact, mailing=None, name="Annual Meeting"),
        subscriber("UNSUBSCRIBE", lead),
        subscriber("RESUBSCRIBE", lead),  # no seed-001 pair in the stand-in
    ]
    outcomes = adapter.write(batch)
    assert dispositions(outcomes) == ["completed"] * 5
    assert outcomes[4].error_code == "ACTIVITY_NOT_WRITTEN"
    pairs = {
        t["Writeback_Id__c"]: (t["Activity_Group__c"], t["Activity__c"], t["Subject"])
        for t in sim.records("Task")
    }
    assert pairs == {
        batch[0].id: ("Sent", "HardBounce", "Sent: HardBounce - March Newsletter"),
        batch[1].id: ("LinkClicked", "Clicked", "LinkClicked: Clicked - March Newsletter"),
        batch[2].id: ("EventSignup", "EventSignup", "EventSignup: EventSignup - Annual Meeting"),
        batch[3].id: ("Unsubscribed", "Unsubscribed", "Unsubscribed: Unsubscribed"),
    }
    assert "Survey/Event: Annual Meeting" in sim.tasks_for(contact)[1]["Description"]
    assert "Clicked: advertisement" in sim.tasks_for(lead)[0]["Description"]
    assert sim.records("Note") == [] and not flag(sim, lead)


def test_tracking_without_a_matching_integration_id_fails_and_writes_nothing(
    sim: SalesforceSim, connect: Callable[..., SalesforceAdapter]
) -> None:
    adapter = connect(tracking_pair=seed_pairs)
    gone, good = sim.add_contact(), sim.add_contact()
    sim.delete(gone)
    batch = [
        activity("Opened", "Opened", None),
        activity("Opened", "Opened", EMAIL),
        activity("Opened", "Opened", id18("003Hs00000QQQQQ")),
        activity("Opened", "Opened", gone),
        activity("Opened", "Opened", "003" + "x" * 10),
        activity("Opened", "Opened", id18("001Hs00000AAAAA")),
        activity("Opened", "Opened", good),
    ]
    outcomes = adapter.write(batch)
    assert [(o.disposition.value, o.error_code) for o in outcomes[:6]] == [
        ("failed", "INTEGRATION_ID_MISMATCH")
    ] * 6
    assert outcomes[6].disposition is Disposition.COMPLETED
    assert [t["WhoId"] for t in sim.records("Task")] == [good]
    assert all(EMAIL not in (o.error_message or "") for o in outcomes)


def test_record_type_that_contradicts_the_id_fails(sim: SalesforceSim, adapter: SalesforceAdapter) -> None:
    lead = sim.add_lead()
    [outcome] = adapter.write([subscriber("UNSUBSCRIBE", lead, record_type="CONTACT")])
    assert (outcome.disposition, outcome.error_code) == (Disposition.FAILED, "INTEGRATION_ID_MISMATCH")
    assert sim.request_log == []


# -- sessions and transient failures ---------------------------------------------------------------


def test_token_expiry_mid_run_is_invisible(sim: SalesforceSim, adapter: SalesforceAdapter) -> None:
    contact = sim.add_contact()
    adapter.write([activity("Sent", "Delivered", contact)])
    sim.expire_tokens()
    outcomes = adapter.write([subscriber("UNSUBSCRIBE", contact), activity("Opened", "Opened", contact)])
    assert dispositions(outcomes) == ["completed", "completed"]
    assert len(sim.calls("POST", "/services/oauth2/token")) == 2
    assert [r.status for r in sim.request_log].count(401) == 1


@pytest.mark.parametrize(("status", "code"), [(503, "SERVER_UNAVAILABLE"), (500, "UNKNOWN_EXCEPTION")])
def test_server_errors_retry_the_whole_batch_without_more_calls(
    sim: SalesforceSim, adapter: SalesforceAdapter, status: int, code: str
) -> None:
    contact = sim.add_contact()
    batch = [subscriber("UNSUBSCRIBE", contact), activity("Sent", "Delivered", contact)]
    sim.fail_next(1, status)
    outcomes = adapter.write(batch)
    assert [(o.disposition.value, o.error_code) for o in outcomes] == [("retry", code)] * 2
    assert len([r for r in sim.request_log if r.path.startswith("/services/data")]) == 1
    assert dispositions(adapter.write(batch)) == ["completed", "completed"]


@pytest.mark.parametrize("status", [429, 403])
def test_throttling_retries_after_what_salesforce_asked(
    sim: SalesforceSim, adapter: SalesforceAdapter, status: int
) -> None:
    contact = sim.add_contact()
    sim.throttle_next(1, retry_after=7, status=status)
    [outcome] = adapter.write([activity("Sent", "Delivered", contact)])
    assert outcome == Outcome.retry(
        outcome.writeback_id, "REQUEST_LIMIT_EXCEEDED", outcome.error_message or "", 7.0, ErrorKind.THROTTLED
    )
    assert sim.records("Task") == []


def test_unreachable_salesforce_is_a_connection_retry(connect: Callable[..., SalesforceAdapter]) -> None:
    with SalesforceSim() as gone:
        url = gone.login_url
    [outcome] = connect(login_url=url).write([subscriber("UNSUBSCRIBE", id18("003Hs00000AAAAA"))])
    assert (outcome.disposition, outcome.error_code) == (Disposition.RETRY, "CONNECTION_ERROR")


def test_refused_credentials_retry_and_never_leak_the_secret(
    sim: SalesforceSim, connect: Callable[..., SalesforceAdapter], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = connect(client_secret="wrong-secret-value")
    [outcome] = adapter.write([subscriber("UNSUBSCRIBE", sim.add_contact())])
    assert (outcome.disposition, outcome.error_code) == (Disposition.RETRY, "OAUTH_INVALID_CLIENT")
    text = f"{outcome} {caplog.text} {adapter._config!r}"
    assert "wrong-secret-value" not in text and sim.client_secret not in text


def test_record_error_messages_are_scrubbed_of_emails(sim: SalesforceSim, adapter: SalesforceAdapter) -> None:
    contact = sim.add_contact(email=EMAIL)
    sim.reject_id(
        contact, "FIELD_CUSTOM_VALIDATION_EXCEPTION", f"Email {EMAIL} is on the do-not-contact list"
    )
    [outcome] = adapter.write([subscriber("UNSUBSCRIBE", contact)])
    assert outcome.error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert outcome.error_message == "Email <email> is on the do-not-contact list"


def test_config_names_the_bad_field_and_takes_the_secret_by_reference_only() -> None:
    with pytest.raises(ValidationError, match="login_url must be an http"):
        Config(login_url="ftp://login.example.com", client_id="c", client_secret={"env": "X"})
    with pytest.raises(ValidationError, match="client_secret"):
        Config(login_url="https://login.example.com", client_id="c", client_secret="inline-secret")


def test_id18_matches_salesforce_checksums() -> None:
    assert id18("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert id18("001A0000006Vm9rIAC") == id18("001A0000006Vm9riac") == "001A0000006Vm9rIAC"
    assert id18("001A0000006Vm9rAAA") is None
    assert id18("001A0000006Vm9") is None and id18("pat@example.com") is None


def test_a_task_for_an_unknown_contact_fails_with_the_salesforce_code(
    sim: SalesforceSim, adapter: SalesforceAdapter
) -> None:
    [outcome] = adapter.write([activity("Opened", "Opened", id18("003Hs00000QQQQQ"))])
    assert (outcome.disposition, outcome.error_code) == (Disposition.FAILED, "INVALID_CROSS_REFERENCE_KEY")
    assert outcome.error_message == "invalid cross reference id (fields: WhoId)"
