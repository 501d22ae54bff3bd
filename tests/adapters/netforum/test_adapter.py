"""The netFORUM adapter against the xWeb simulator on loopback: seed 000's strings, dates and flags
as the simulator holds them, order, idempotency, tokens, and the faults it must not burn."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from writeback_dev.simulators.netforum import NetforumSim

from writeback import schedules
from writeback.adapters.base import (
    ORDER_BLOCKED,
    Disposition,
    ErrorKind,
    Outcome,
    Writeback,
)
from writeback.adapters.netforum import KIND, TRACKING, Config, NetforumAdapter
from writeback.adapters.netforum.client import XWebClient
from writeback.adapters.netforum.errors import XWebError
from writeback.contract.events import parse_event
from writeback.ledger.rows import MailingActivity, WritebackClass

ZONE = "America/New_York"
WHEN = "2026-01-15T19:05:09Z"  # 01/15/2026 02:05:09 PM in New York (EST)
SENT_AT = "2026-01-14T15:00:00Z"  # the mailing's send date: 10:00 AM EST
SEND_DATE = datetime(2026, 1, 14, 10, 0)
MAILING = {"mailing_id": "m-2026-01", "name": "January Newsletter", "send_date": SENT_AT}
PASSWORD_ENV = "NETFORUM_TEST_XWEB_PASSWORD"


@pytest.fixture(scope="module")
def sim() -> Iterator[NetforumSim]:
    with NetforumSim() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(sim: NetforumSim, monkeypatch: pytest.MonkeyPatch) -> None:
    sim.reset()
    monkeypatch.setenv(PASSWORD_ENV, sim.password)


def config(sim: NetforumSim, **changes: Any) -> Config:
    return Config.model_validate(
        {"xweb_url": sim.endpoint, "username": sim.user, "password": {"env": PASSWORD_ENV}, "timeout_s": 5, **changes}
    )


@pytest.fixture
def adapter(sim: NetforumSim) -> Iterator[NetforumAdapter]:
    with NetforumAdapter(config(sim), time_zone=ZONE) as opened:
        yield opened


@pytest.fixture
def ada(sim: NetforumSim) -> str:
    return sim.add_individual("Ada", "Lovelace", "ada@example.org")


def writeback(data: dict[str, Any]) -> Writeback:
    event = parse_event(data)
    wb_class = WritebackClass.SUBSCRIBER if data["type"] == "subscriber" else WritebackClass.ACTIVITY
    return Writeback(str(uuid.uuid4()), "acct-1", "nf-1", wb_class, event.recipient.key(), event.occurred_at, event)  # type: ignore[union-attr]


def _event(kind: str, who: str | dict[str, str], occurred: str, **fields: Any) -> dict[str, Any]:
    recipient = {"integration_id": who} if isinstance(who, str) else who
    return {
        "type": kind,
        "event_id": str(uuid.uuid4()),
        "account_id": "acct-1",
        "occurred_at": occurred,
        "source": fields.pop("source", "MAILING_LINK"),
        "recipient": recipient,
        **fields,
    }


def activity(who: str | dict[str, str], subcode: str, *, occurred: str = WHEN, **fields: Any) -> Writeback:
    fields.setdefault("mailing", MAILING)
    return writeback(_event("activity", who, occurred, subcode=subcode, **fields))


def subscriber(who: str | dict[str, str], action: str, *, occurred: str = WHEN, **fields: Any) -> Writeback:
    return writeback(_event("subscriber", who, occurred, action=action, **fields))


def shown(rows: list[dict[str, Any]], *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(row[c] for c in columns) for row in rows]


def state(sim: NetforumSim, cst_key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Individual (less its change stamp) and its Correspondence tab."""
    individual = {k: v for k, v in (sim.individual(cst_key) or {}).items() if k != "cst_change_date"}
    return individual, sim.correspondence(cst_key)


def completed(outcomes: list[Outcome]) -> bool:
    return all(o.disposition is Disposition.COMPLETED and o.error_code is None for o in outcomes)


# -- seed 000's rows ---------------------------------------------------------------------------


def test_mailing_activity_rows_carry_000s_codes_message_names_and_the_send_date(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str
) -> None:
    batch = [
        activity(ada, "Delivered"),
        activity(ada, "Opened", open={"device": "iPhone", "client": "Apple Mail", "country": "United States"}),
        activity(ada, "Clicked", click={"url": "https://example.org/a", "target": "LINK"}),
        activity(ada, "Clicked", click={"url": "https://ads.example.org/b", "target": "ADVERTISEMENT"}),
        activity(ada, "Blocked"),
        activity(ada, "HardBounce"),
        activity(ada, "SocialShare", social={"network": "LinkedIn"}),
    ]
    outcomes = adapter.write(batch)
    assert completed(outcomes)
    rows = sim.correspondence(ada)
    assert shown(rows, "cma_activity_code", "cma_activity_subcode", "cma_message_name") == [
        ("Informz Mailing", "Sent", "Mailing was sent"),
        ("Informz Mailing", "Open", "Open | iPhone | Apple Mail | United States"),
        ("Informz Mailing", "Click", "Hyperlink was clicked"),
        ("Informz Mailing", "Click", "Advertisement was clicked"),
        ("Informz Mailing", "Block", "Mailing was blocked"),
        ("Informz Mailing", "Bounce", "Mailing bounced (hard bounce)"),
        ("Informz Mailing", "Social Sharing", "Mailing was shared on LinkedIn"),
    ]
    email_key = sim.individual(ada)["eml_key"]
    for row, wb, outcome in zip(rows, batch, outcomes, strict=True):
        assert row["cma_activity_date"] == SEND_DATE  # the mailing's send date, not the activity's
        assert row["cma_message_id"] == "m-2026-01"
        assert row["cma_activity_id"] == wb.id
        assert (row["cma_eml_key"], row["cma_eml_address"]) == (email_key, "ada@example.org")
        assert outcome.crm_ids == (row["cma_key"],)
    assert not any("example.org/" in str(value) for row in rows for value in row.values())  # no link written


def test_open_details_the_event_lacks_read_unknown(sim: NetforumSim, adapter: NetforumAdapter, ada: str) -> None:
    adapter.write([activity(ada, "Opened", open={"device": "Pixel | 8"}), activity(ada, "Opened")])
    assert [row["cma_message_name"] for row in sim.correspondence(ada)] == [
        "Open | Pixel / 8 | Unknown | Unknown",
        "Open | Unknown | Unknown | Unknown",
    ]


def test_unsubscribe_sets_do_not_contact_and_writes_date_time_and_source(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str
) -> None:
    grace = sim.add_individual("Grace", "Hopper", "grace@example.org")
    outcomes = adapter.write(
        [
            subscriber(ada, "UNSUBSCRIBE"),
            subscriber(grace, "UNSUBSCRIBE", occurred="2026-07-04T02:30:00Z", source="ADMIN", reason="Too much mail"),
        ]
    )
    assert completed(outcomes)
    assert sim.individual(ada)["cst_no_email_flag"] is True
    assert shown(sim.correspondence(ada), "cma_activity_code", "cma_activity_subcode", "cma_message_name", "cma_activity_date") == [
        ("InformzUnsubscribe", None, "01/15/2026 02:05:09 PM via mailing link", datetime(2026, 1, 15, 14, 5, 9)),
    ]
    assert shown(sim.correspondence(grace), "cma_message_name", "cma_activity_date") == [
        ("07/03/2026 10:30:00 PM via administrator; reason: Too much mail", datetime(2026, 7, 3, 22, 30)),
    ]


@pytest.mark.parametrize("batches", [1, 2], ids=["one batch", "two batches"])
def test_unsubscribe_then_resubscribe_restores_the_individual(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str, batches: int
) -> None:
    assert completed(adapter.write([activity(ada, "Delivered")]))
    before = state(sim, ada)
    unsubscribe = subscriber(ada, "UNSUBSCRIBE")
    resubscribe = subscriber(ada, "RESUBSCRIBE", occurred="2026-01-16T09:00:00Z", source="ADMIN")
    if batches == 1:
        outcomes = adapter.write([unsubscribe, resubscribe])
    else:
        outcomes = adapter.write([unsubscribe])
        assert sim.individual(ada)["cst_no_email_flag"] is True
        outcomes += adapter.write([resubscribe])
    assert completed(outcomes)
    assert state(sim, ada) == before
    deleted = [r for r in sim.correspondence(ada, include_deleted=True) if r["cma_delete_flag"]]
    assert shown(deleted, "cma_activity_code") == [("InformzUnsubscribe",)]


def test_a_recipients_changes_land_in_order_within_a_batch(sim: NetforumSim, adapter: NetforumAdapter, ada: str) -> None:
    outcomes = adapter.write(
        [
            subscriber(ada, "UNSUBSCRIBE", occurred="2026-01-15T10:00:00Z"),
            subscriber(ada, "RESUBSCRIBE", occurred="2026-01-15T11:00:00Z", source="ADMIN"),
            subscriber(ada, "UNSUBSCRIBE", occurred="2026-01-15T12:00:00Z", source="SUBSCRIPTION_PAGE"),
        ]
    )
    assert completed(outcomes)
    assert sim.individual(ada)["cst_no_email_flag"] is True
    assert [r["cma_message_name"] for r in sim.correspondence(ada)] == ["01/15/2026 07:00:00 AM via subscription page"]


def test_a_late_resubscribe_does_not_undo_a_later_unsubscribe(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str
) -> None:
    adapter.write([subscriber(ada, "UNSUBSCRIBE", occurred="2026-01-15T12:00:00Z")])
    [outcome] = adapter.write([subscriber(ada, "RESUBSCRIBE", occurred="2026-01-15T11:00:00Z", source="ADMIN")])
    assert (outcome.disposition, outcome.error_code) == (Disposition.COMPLETED, "RESUBSCRIBE_SUPERSEDED")
    assert sim.individual(ada)["cst_no_email_flag"] is True and len(sim.correspondence(ada)) == 1


def test_bad_email_sets_the_emails_bad_status(sim: NetforumSim, adapter: NetforumAdapter, ada: str) -> None:
    grace = sim.add_individual("Grace", "Hopper", "grace@example.org")
    second = sim.add_email(grace, "grace@navy.example.mil")
    outcomes = adapter.write(
        [
            subscriber(ada, "BAD_EMAIL", reason="550 5.1.1 mailbox unknown"),
            subscriber({"email": "GRACE@example.org"}, "BAD_EMAIL"),
            subscriber({"integration_id": grace, "email": "grace@navy.example.mil"}, "BAD_EMAIL"),
        ]
    )
    assert completed(outcomes[:2])
    assert (outcomes[2].disposition, outcomes[2].error_code) == (Disposition.FAILED, "EMAIL_NOT_PRIMARY")
    assert shown([sim.individual(ada)], "eml_invalid_flag", "eml_invalid_reason", "cst_no_email_flag") == [
        (True, "550 5.1.1 mailbox unknown", False)
    ]
    assert shown([sim.individual(grace)], "eml_invalid_flag", "eml_invalid_reason") == [(True, "Bad Email")]
    assert sim.individual(grace)["eml_key"] != second and sim.correspondence(ada) == []


# -- recipients ------------------------------------------------------------------------------


def test_recipients_without_a_key_are_found_by_email_once_per_write(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str
) -> None:
    obrien = sim.add_individual("Pat", "O'Brien", "pat.o'brien@example.org")
    by_email = {"email": "Ada@Example.org"}
    outcomes = adapter.write(
        [
            activity(by_email, "Delivered"),
            activity(by_email, "Opened"),
            subscriber(by_email, "UNSUBSCRIBE"),
            activity({"email": "pat.o'brien@example.org"}, "Delivered"),
        ]
    )
    assert completed(outcomes)
    assert len(sim.correspondence(ada)) == 3 and sim.individual(ada)["cst_no_email_flag"] is True
    assert len(sim.correspondence(obrien)) == 1
    assert len(sim.calls("GetQuery")) == 2  # the Individuals by email, then the rows already written


def test_unknown_customers_fail_with_a_clear_code_and_burn_no_fault(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str
) -> None:
    twin = sim.add_individual("Ada", "Twin", "shared@example.org")
    sim.add_individual("Bob", "Twin", "shared@example.org")
    outcomes = adapter.write(
        [
            subscriber(str(uuid.uuid4()), "UNSUBSCRIBE"),
            subscriber("C-000123", "UNSUBSCRIBE"),
            subscriber({"email": "nobody@example.org"}, "BAD_EMAIL"),
            activity({"email": "shared@example.org"}, "Delivered"),
            activity(ada, "Delivered"),
        ]
    )
    assert [(o.disposition, o.error_code) for o in outcomes] == [
        (Disposition.FAILED, "UNKNOWN_CUSTOMER"),
        (Disposition.FAILED, "UNKNOWN_CUSTOMER"),
        (Disposition.FAILED, "UNKNOWN_CUSTOMER"),
        (Disposition.FAILED, "AMBIGUOUS_CUSTOMER"),
        (Disposition.COMPLETED, None),
    ]
    assert all(o.kind is ErrorKind.REJECTED for o in outcomes[:4])
    assert sim.fault_count() == 0 and sim.correspondence(twin) == []
    assert [r.objects for r in sim.calls("InsertFacadeObject")] == [1]


def test_three_hundred_bad_records_cannot_lock_the_xweb_user(sim: NetforumSim, adapter: NetforumAdapter) -> None:
    batch = [
        *(subscriber(str(uuid.uuid4()), "UNSUBSCRIBE") for _ in range(100)),
        *(activity(f"C-{n:06d}", "Delivered") for n in range(100)),
        *(activity({"email": f"nobody{n}@example.org"}, "Opened") for n in range(100)),
    ]
    outcomes = adapter.write(batch)
    assert len(outcomes) == 300
    assert {(o.disposition, o.error_code) for o in outcomes} == {(Disposition.FAILED, "UNKNOWN_CUSTOMER")}
    assert sim.fault_count() == 0 and sim.lockout() is None
    assert sim.calls("InsertFacadeObject") == [] and sim.calls("UpdateFacadeObject") == []


def test_records_xweb_keeps_refusing_cost_one_fault_per_batch_and_stop_at_the_budget(sim: NetforumSim) -> None:
    """A business rule that refuses every row is the one fault validation cannot prevent."""
    keys = [sim.add_individual(None, f"Member {n}", f"m{n}@example.org") for n in range(300)]
    sim.fail_record("cma_activity_code", "Informz Mailing", "Trigger: mailing activity is not accepted")
    batch = [activity(key, "Delivered") for key in keys]
    with NetforumAdapter(config(sim, fault_budget_per_day=20), time_zone=ZONE) as adapter:
        first = adapter.write(batch)
        assert sim.fault_count() == 1
        assert {(o.error_code, o.kind) for o in first[:100]} == {("ROLLED_BACK", ErrorKind.CONTENTION)}
        assert {(o.error_code, o.kind) for o in first[100:]} == {("XWEB_FAULT_HALT", ErrorKind.OUTAGE)}
        for _ in range(40):  # a flusher retrying every window
            outcomes = adapter.write(batch)
        assert sim.fault_count() == 20 and sim.lockout() is None
        assert {(o.error_code, o.kind) for o in outcomes} == {("XWEB_FAULT_BUDGET_SPENT", ErrorKind.CREDENTIALS)}
    assert sim.activities() == []


# -- order and failures ------------------------------------------------------------------------


def test_once_a_recipients_writeback_fails_its_later_ones_wait(sim: NetforumSim, adapter: NetforumAdapter, ada: str) -> None:
    grace = sim.add_individual("Grace", "Hopper", "grace@example.org")
    sim.fail_record("cst_no_email_flag", "1", "Trigger: opt-outs are managed by hand", obj="Individual")
    outcomes = adapter.write([subscriber(ada, "UNSUBSCRIBE"), activity(ada, "Delivered"), activity(grace, "Delivered")])
    assert (outcomes[0].disposition, outcomes[0].error_code) == (Disposition.FAILED, "RecordRejected")
    assert outcomes[0].error_message == "Trigger: opt-outs are managed by hand"
    assert (outcomes[1].error_code, outcomes[1].kind) == (ORDER_BLOCKED, ErrorKind.ORDER)
    assert (outcomes[2].disposition, outcomes[2].error_code) == (Disposition.RETRY, "XWEB_FAULT_HALT")
    assert sim.fault_count() == 1 and sim.activities() == []


def test_a_refused_object_in_a_multi_object_insert_is_found_by_inserting_alone(
    sim: NetforumSim, adapter: NetforumAdapter
) -> None:
    a, b, c = (sim.add_individual(None, name, f"{name}@example.org") for name in ("a", "b", "c"))
    sim.fail_record("cma_message_name", "Mailing was blocked")
    batch = [activity(a, "Delivered"), activity(b, "Blocked"), activity(c, "Clicked")]
    first = adapter.write(batch)
    assert {(o.disposition, o.error_code) for o in first} == {(Disposition.RETRY, "ROLLED_BACK")}
    second = adapter.write(batch)
    assert [(o.disposition, o.error_code) for o in second] == [
        (Disposition.COMPLETED, None),
        (Disposition.FAILED, "RecordRejected"),
        (Disposition.RETRY, "XWEB_FAULT_HALT"),
    ]
    assert completed(adapter.write(batch[2:]))
    assert sim.fault_count() == 2
    assert [len(sim.correspondence(key)) for key in (a, b, c)] == [1, 0, 1]


def test_an_outage_is_retried_with_error_kind_outage(sim: NetforumSim, adapter: NetforumAdapter, ada: str) -> None:
    sim.fail_next(1)
    batch = [activity(ada, "Delivered"), subscriber(ada, "UNSUBSCRIBE")]
    outcomes = adapter.write(batch)
    assert {(o.disposition, o.error_code, o.kind) for o in outcomes} == {(Disposition.RETRY, "HTTP_503", ErrorKind.OUTAGE)}
    assert len(sim.request_log) == 1 and sim.fault_count() == 0
    assert completed(adapter.write(batch))
    assert len(sim.correspondence(ada)) == 2


def test_refused_credentials_are_retried_as_credentials_and_not_sent_again(
    sim: NetforumSim, monkeypatch: pytest.MonkeyPatch, ada: str
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    with NetforumAdapter(config(sim), time_zone=ZONE) as adapter:
        first = adapter.write([activity(ada, "Delivered")])
        second = adapter.write([activity(ada, "Delivered")])
        assert (first[0].disposition, first[0].error_code, first[0].kind) == (
            Disposition.RETRY, "InvalidCredentials", ErrorKind.CREDENTIALS
        )  # fmt: skip
        assert (second[0].error_code, second[0].kind) == ("XWEB_CREDENTIALS_REFUSED", ErrorKind.CREDENTIALS)
        assert len(sim.calls("Authenticate")) == 1
        monkeypatch.setenv(PASSWORD_ENV, sim.password)  # the operator fixes the secret
        assert completed(adapter.write([activity(ada, "Delivered")]))
        monkeypatch.delenv(PASSWORD_ENV)
    with NetforumAdapter(config(sim), time_zone=ZONE) as adapter:
        [missing] = adapter.write([activity(ada, "Delivered")])
        assert (missing.error_code, missing.kind) == ("SECRET_UNAVAILABLE", ErrorKind.CREDENTIALS)


# -- tokens ------------------------------------------------------------------------------------


def test_token_expiry_mid_batch_is_invisible_in_the_outcome(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts = 0
    original = XWebClient.insert

    def expire_before_the_second(self: XWebClient, obj: str, objects: Any) -> Any:
        nonlocal inserts
        inserts += 1
        if inserts == 2:
            sim.expire_tokens()
        return original(self, obj, objects)

    monkeypatch.setattr(XWebClient, "insert", expire_before_the_second)
    outcomes = adapter.write([activity(ada, "Delivered") for _ in range(250)])
    assert completed(outcomes) and len(sim.correspondence(ada)) == 250
    assert [r.fault for r in sim.request_log].count("TokenExpired") == 1
    assert len(sim.calls("Authenticate")) == 2 and sim.fault_count() == 1


def test_the_session_is_renewed_before_xweb_would_expire_it(sim: NetforumSim, ada: str) -> None:
    now = [0.0]
    with NetforumAdapter(config(sim), time_zone=ZONE, clock=lambda: now[0]) as adapter:
        assert completed(adapter.write([activity(ada, "Delivered")]))
        now[0] += 15 * 60
        sim.advance_clock(19 * 60)
        assert completed(adapter.write([activity(ada, "Opened")]))
    assert len(sim.calls("Authenticate")) == 2 and sim.fault_count() == 0


def test_every_response_rotates_the_token_and_the_client_follows(sim: NetforumSim, adapter: NetforumAdapter, ada: str) -> None:
    for _ in range(3):
        assert completed(adapter.write([activity(ada, "Delivered")]))
    sim.advance_clock(sim.token_grace + 1)  # superseded tokens are now refused
    assert completed(adapter.write([activity(ada, "Opened")]))
    assert len(sim.calls("Authenticate")) == 1 and sim.fault_count() == 0


# -- idempotency -------------------------------------------------------------------------------


def test_a_retried_batch_writes_nothing_twice(sim: NetforumSim, adapter: NetforumAdapter, ada: str) -> None:
    batch = [activity(ada, "Delivered"), activity(ada, "Opened"), subscriber(ada, "UNSUBSCRIBE")]
    first = adapter.write(batch)
    inserts = len(sim.calls("InsertFacadeObject"))
    again = adapter.write(batch)
    assert completed(first) and completed(again)
    assert [o.crm_ids for o in again] == [o.crm_ids for o in first]
    assert len(sim.calls("InsertFacadeObject")) == inserts and len(sim.calls("UpdateFacadeObject")) == 1
    assert len(sim.correspondence(ada, include_deleted=True)) == 3


def test_a_retried_unsubscribe_and_resubscribe_still_restore_the_individual(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str
) -> None:
    before = state(sim, ada)
    batch = [subscriber(ada, "UNSUBSCRIBE"), subscriber(ada, "RESUBSCRIBE", occurred="2026-01-16T09:00:00Z")]
    assert completed(adapter.write(batch)) and completed(adapter.write(batch))
    assert state(sim, ada) == before
    # the documented limit: the deleted row is invisible, so the retry wrote and removed another
    assert len(sim.correspondence(ada, include_deleted=True)) == 2


def test_an_insert_whose_answer_was_lost_is_not_written_again(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = XWebClient.insert

    def stored_then_lost(self: XWebClient, obj: str, objects: Any) -> Any:
        original(self, obj, objects)
        raise XWebError(ErrorKind.OUTAGE, "TIMEOUT", "InsertFacadeObject: no answer within 5s")

    batch = [activity(ada, "Delivered"), activity(ada, "Clicked"), subscriber(ada, "UNSUBSCRIBE")]
    monkeypatch.setattr(XWebClient, "insert", stored_then_lost)
    lost = adapter.write(batch)
    assert {(o.disposition, o.error_code, o.kind) for o in lost} == {(Disposition.RETRY, "TIMEOUT", ErrorKind.OUTAGE)}
    monkeypatch.setattr(XWebClient, "insert", original)
    assert completed(adapter.write(batch))
    # the two stored rows are found; only the unsubscribe, which the stop held back, is inserted
    assert [r.objects for r in sim.calls("InsertFacadeObject")] == [2, 1]
    assert len(sim.correspondence(ada, include_deleted=True)) == 3


def test_a_slow_answer_is_a_timeout_retried_as_an_outage(sim: NetforumSim, ada: str) -> None:
    with NetforumAdapter(config(sim, timeout_s=0.5), time_zone=ZONE) as adapter:
        assert completed(adapter.write([activity(ada, "Delivered")]))
        sim.slow_next(1, 1.0)
        [slow] = adapter.write([activity(ada, "Opened")])
        assert (slow.disposition, slow.error_code, slow.kind) == (Disposition.RETRY, "TIMEOUT", ErrorKind.OUTAGE)
        sim.wait_idle()
        assert completed(adapter.write([activity(ada, "Opened")]))
    assert [r["cma_activity_subcode"] for r in sim.correspondence(ada, include_deleted=True)] == ["Sent", "Open"]


# -- what is not written -----------------------------------------------------------------------


def test_what_netforum_does_not_take_is_counted_or_refused_without_a_call(
    sim: NetforumSim, adapter: NetforumAdapter, ada: str
) -> None:
    outcomes = adapter.write(
        [
            subscriber(ada, "SUBSCRIBE"),
            activity(ada, "WebsiteVisit", mailing=None),
            activity(ada, "Delivered", mailing=None),
        ]
    )
    assert [(o.disposition, o.error_code) for o in outcomes] == [
        (Disposition.COMPLETED, "ACTION_NOT_WRITTEN"),
        (Disposition.COMPLETED, "ACTIVITY_NOT_WRITTEN"),
        (Disposition.FAILED, "MAILING_MISSING"),
    ]
    assert sim.request_log == []


def test_a_wsdl_url_alone_reaches_the_service_at_the_wsdls_address(sim: NetforumSim, ada: str) -> None:
    settings = Config(wsdl_url=sim.wsdl_url, username=sim.user, password={"env": PASSWORD_ENV})  # type: ignore[arg-type]
    with NetforumAdapter(settings, time_zone=ZONE) as adapter:
        assert completed(adapter.write([activity(ada, "Delivered")]))


# -- the kind ----------------------------------------------------------------------------------


def test_the_kind_declares_000s_rules() -> None:
    assert KIND.name == "netforum" and KIND.config is Config
    assert KIND.mailing_activity == frozenset(MailingActivity) and KIND.mailing_activity_on is None
    assert KIND.subscriber_cadence is not None and KIND.subscriber_cadence[1] == "000"
    assert KIND.subscriber_cadence[0].total_seconds() == 600 and KIND.origin_rule
    assert KIND.schedules(ZONE) == {
        WritebackClass.SUBSCRIBER: schedules.SUBSCRIBER_STATUS_DEFAULT,
        WritebackClass.ACTIVITY: schedules.daily_default(ZONE),
    }
    assert NetforumAdapter.max_batch >= 300


def test_the_kind_routes_status_and_the_activity_types_that_are_on() -> None:
    connection = SimpleNamespace(
        offered_mailing_activity=lambda: frozenset(MailingActivity),
        mailing_activity=lambda: frozenset({MailingActivity.SENT}),
        writebacks=SimpleNamespace(excluded_mailings=frozenset({"m-excluded"})),
    )
    key = str(uuid.uuid4())

    def route(wb: Writeback) -> tuple[Any, Any]:
        found = KIND.route(wb.event, connection)  # type: ignore[arg-type]
        return found.wb_class, found.reason

    assert route(subscriber(key, "UNSUBSCRIBE")) == (WritebackClass.SUBSCRIBER, None)
    assert route(subscriber(key, "RESUBSCRIBE", source="CRM_SYNC")) == (None, "originated_in_crm")
    assert route(activity(key, "Delivered")) == (WritebackClass.ACTIVITY, None)
    assert route(activity(key, "Opened")) == (None, "activity_type_disabled")
    assert route(activity(key, "WebsiteVisit", mailing=None)) == (None, "not_for_kind")
    excluded = {**MAILING, "mailing_id": "m-excluded"}
    assert route(activity(key, "Delivered", mailing=excluded)) == (None, "mailing_excluded")


def test_open_builds_the_adapter_from_the_connections_config(sim: NetforumSim) -> None:
    assert KIND.open is not None
    account = SimpleNamespace(time_zone=ZONE)
    connection = SimpleNamespace(config=config(sim))
    adapter = KIND.open(account, connection)  # type: ignore[arg-type]
    assert isinstance(adapter, NetforumAdapter)
    adapter.close()


# -- netFORUM as a tracking connection's integrated product (seed 001) -------------------------


@pytest.fixture
def tracker(sim: NetforumSim) -> Iterator[NetforumAdapter]:
    assert TRACKING.config is Config
    adapter = TRACKING.open(SimpleNamespace(time_zone=ZONE), config(sim))  # type: ignore[arg-type]
    assert isinstance(adapter, NetforumAdapter)
    with adapter:
        yield adapter


def test_tracking_writes_001s_code_and_subcode_as_one_row_each_and_touches_no_flag(
    sim: NetforumSim, tracker: NetforumAdapter, ada: str
) -> None:
    before = state(sim, ada)[0]
    batch = [
        activity(ada, "Delivered"),
        activity(ada, "Opened", occurred="2026-01-15T20:00:00Z"),
        activity(ada, "SoftBounce"),
        activity(ada, "WebsiteVisit", mailing=None),
        activity(ada, "SurveySubmit", mailing=None, name="Member Survey 2026"),
        subscriber(ada, "UNSUBSCRIBE"),
        subscriber(ada, "SUPPRESS", suppression="SpamComplaintSuppress"),
    ]
    assert completed(tracker.write(batch))
    rows = {r["cma_activity_id"]: r for r in sim.correspondence(ada)}
    assert [tuple(rows[wb.id][c] for c in ("cma_activity_code", "cma_activity_subcode")) for wb in batch] == [
        ("Sent", "Delivered"),
        ("Opened", "Opened"),
        ("Sent", "SoftBounce"),
        ("WebsiteVisit", "WebsiteVisit"),
        ("Survey Submit", "Survey Submit"),
        ("Unsubscribed", "Unsubscribed"),
        ("Suppressed", "SpamComplaintSuppress"),
    ]
    first, _, _, visit, survey, *_ = batch
    assert rows[first.id]["cma_message_name"] == "January Newsletter"
    assert rows[first.id]["cma_message_id"] == "m-2026-01"
    assert rows[first.id]["cma_activity_date"] == datetime(2026, 1, 15, 14, 5, 9)  # when it happened
    assert rows[survey.id]["cma_message_name"] == "Member Survey 2026"  # 001: only the name
    assert rows[visit.id]["cma_message_name"] is None and rows[visit.id]["cma_message_id"] is None
    assert state(sim, ada)[0] == before  # tracking records activity; the unsubscribe sets no flag
    assert [r.objects for r in sim.calls("InsertFacadeObject")] == [7]
    assert sim.calls("UpdateFacadeObject") == []


def test_tracking_counts_what_001_has_no_pair_for_and_needs_the_integration_id(
    sim: NetforumSim, tracker: NetforumAdapter, ada: str
) -> None:
    by_email = {"email": "ada@example.org"}
    outcomes = tracker.write(
        [
            subscriber(ada, "RESUBSCRIBE", source="ADMIN"),
            subscriber(ada, "BAD_EMAIL"),
            activity(by_email, "Delivered"),  # found by email for 000, but 001 needs the ID
            activity(str(uuid.uuid4()), "Delivered"),  # no such Individual
        ]
    )
    assert [(o.disposition, o.error_code) for o in outcomes] == [
        (Disposition.COMPLETED, "ACTIVITY_NOT_WRITTEN"),
        (Disposition.COMPLETED, "ACTIVITY_NOT_WRITTEN"),
        (Disposition.FAILED, "UNKNOWN_CUSTOMER"),
        (Disposition.FAILED, "UNKNOWN_CUSTOMER"),
    ]
    assert "Integration ID" in (outcomes[2].error_message or "")
    assert sim.activities() == [] and sim.fault_count() == 0
    assert sim.calls("InsertFacadeObject") == []


def test_tracking_is_idempotent(sim: NetforumSim, tracker: NetforumAdapter, ada: str) -> None:
    batch = [activity(ada, "Delivered"), subscriber(ada, "UNSUBSCRIBE")]
    assert completed(tracker.write(batch)) and completed(tracker.write(batch))
    assert len(sim.correspondence(ada, include_deleted=True)) == 2
