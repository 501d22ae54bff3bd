"""The Personify adapter against a real database holding Personify's tables, on SQLite and on
PostgreSQL (a database of its own, separate from the ledger): the exact CUS_OPT_IN and
CUS_ACTIVITY rows for each scope and mode, refusals per record, idempotency, periods in order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from writeback_dev import personify_schema as ps

from writeback.adapters.base import Disposition, ErrorKind, Writeback
from writeback.adapters.personify import Config, PersonifyAdapter
from writeback.contract.events import parse_event
from writeback.ledger.rows import WritebackClass

ZONE = "America/New_York"
ADA, GRACE = "000000123", "000000456"
MAPPING = {"group_category": {"gc-7": "NEWSLETTER"}, "group": {"g-12": "ADVOCACY"}, "message_category": {"mc-3": "EVENTS"}}
T1, T2, T3 = "2026-01-15T19:05:09Z", "2026-01-16T14:00:00Z", "2026-01-17T15:30:00.250Z"
L1, L2, L3 = datetime(2026, 1, 15, 14, 5, 9), datetime(2026, 1, 16, 9, 0), datetime(2026, 1, 17, 10, 30, 0, 250000)


@pytest.fixture(params=["sqlite", "postgresql"])
def personify_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh Personify database per test on each backend (never the ledger's)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'personify.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def db(personify_url: str) -> Iterator[sa.Engine]:
    engine = ps.create(personify_url)
    ps.add_codes(engine, ps.INTEREST_AREA_TYPE, ["NEWSLETTER", "ADVOCACY", "EVENTS"])
    ps.add_codes(engine, ps.ACTIVITY_TYPE, ["UNSUBSCRIBE", "SUBSCRIBE"])
    ps.add_codes(engine, ps.OPT_OUT_REASON_TYPE, ["EMAIL"])
    ps.add_customer(engine, ADA, "Ada Lovelace")
    ps.add_customer(engine, GRACE, "Grace Hopper")
    yield engine
    engine.dispose()


def config(url: str, **changes: Any) -> Config:
    return Config.model_validate({"database_url": url, "manage_unsubscribe": MAPPING, **changes})


@pytest.fixture
def open_adapter(personify_url: str) -> Iterator[Any]:
    opened: list[PersonifyAdapter] = []

    def make(**changes: Any) -> PersonifyAdapter:
        adapter = PersonifyAdapter(config(personify_url, **changes), time_zone=ZONE)
        opened.append(adapter)
        return adapter

    yield make
    for adapter in opened:
        adapter.close()


def wb(action: str, who: str, when: str, scope: dict[str, str] | None = None, **fields: Any) -> Writeback:
    data: dict[str, Any] = {
        "type": "subscriber", "event_id": str(uuid.uuid4()), "account_id": "acct-1", "occurred_at": when,
        "source": fields.pop("source", "MAILING_LINK"), "recipient": {"integration_id": who}, "action": action,
        **fields,
    }  # fmt: skip
    if scope is not None:
        data["scope"] = scope
    event = parse_event(data)
    return Writeback(str(uuid.uuid4()), "acct-1", "ps-1", WritebackClass.SUBSCRIBER, who, event.occurred_at, event)  # type: ignore[arg-type]


GROUP = {"kind": "GROUP", "id": "g-12", "name": "Advocacy"}
GROUP_CATEGORY = {"kind": "GROUP_CATEGORY", "id": "gc-7", "name": "Newsletters"}
MESSAGE_CATEGORY = {"kind": "MESSAGE_CATEGORY", "id": "mc-3"}
ALL_MAIL = {"kind": "ALL_MAIL"}


@pytest.mark.parametrize(
    ("scope", "code", "target"),
    [(GROUP, "ADVOCACY", 'group "Advocacy" (g-12)'),
     (GROUP_CATEGORY, "NEWSLETTER", 'group category "Newsletters" (gc-7)'),
     (MESSAGE_CATEGORY, "EVENTS", "message category (mc-3)")],
)  # fmt: skip
def test_unsubscribe_in_both_modes_ends_the_interest_area_and_adds_an_activity(db, open_adapter, scope, code, target):
    ps.add_opt_in(db, ADA, code, datetime(2025, 1, 1))
    ps.add_opt_in(db, ADA, "EVENTS" if code != "EVENTS" else "ADVOCACY", datetime(2025, 1, 1))
    other = "EVENTS" if code != "EVENTS" else "ADVOCACY"
    [outcome] = open_adapter(personify_mode="both").write([wb("UNSUBSCRIBE", ADA, T1, scope, reason="too many")])
    assert outcome.disposition is Disposition.COMPLETED and outcome.error_code is None
    assert ps.opt_ins(db) == [
        (ADA, "INTEREST_AREA", code, datetime(2025, 1, 1), L1, None),
        (ADA, "INTEREST_AREA", other, datetime(2025, 1, 1), None, None),
    ]
    assert ps.activities(db) == [(ADA, "UNSUBSCRIBE", L1, f"Unsubscribed from {target} via mailing link; reason: too many")]


def test_unsubscribe_from_all_mail_ends_every_managed_interest_area(db, open_adapter):
    for code in ("NEWSLETTER", "ADVOCACY"):
        ps.add_opt_in(db, ADA, code, datetime(2025, 1, 1))
    [outcome] = open_adapter(personify_mode="opt_in", opt_out_reason_code="EMAIL").write([wb("UNSUBSCRIBE", ADA, T1, ALL_MAIL)])
    assert outcome.disposition is Disposition.COMPLETED
    assert ps.opt_ins(db) == [
        (ADA, "INTEREST_AREA", "NEWSLETTER", datetime(2025, 1, 1), L1, "EMAIL"),
        (ADA, "INTEREST_AREA", "ADVOCACY", datetime(2025, 1, 1), L1, "EMAIL"),
    ]
    assert ps.activities(db) == []


def test_activity_mode_writes_only_the_activity_record_even_for_an_unmapped_group(db, open_adapter):
    adapter = open_adapter(personify_mode="activity")
    outcomes = adapter.write(
        [wb("UNSUBSCRIBE", ADA, T1, {"kind": "GROUP", "id": "g-99"}), wb("RESUBSCRIBE", ADA, T2, ALL_MAIL, source="SUBSCRIPTION_PAGE")]
    )
    assert [o.disposition for o in outcomes] == [Disposition.COMPLETED] * 2
    assert ps.opt_ins(db) == []
    assert ps.activities(db) == [
        (ADA, "UNSUBSCRIBE", L1, "Unsubscribed from group (g-99) via mailing link"),
        (ADA, "SUBSCRIBE", L2, "Resubscribed to all mail via subscription page"),
    ]


def test_subscribe_opens_a_period_and_all_mail_resubscribe_reopens_only_what_the_customer_had(db, open_adapter):
    ps.add_opt_in(db, ADA, "ADVOCACY", datetime(2025, 1, 1))
    adapter = open_adapter(personify_mode="opt_in")
    outcomes = adapter.write(
        [wb("SUBSCRIBE", GRACE, T1, MESSAGE_CATEGORY), wb("UNSUBSCRIBE", ADA, T1, ALL_MAIL), wb("RESUBSCRIBE", ADA, T2, ALL_MAIL)]
    )
    assert [o.disposition for o in outcomes] == [Disposition.COMPLETED] * 3
    assert ps.opt_ins(db) == [
        (ADA, "INTEREST_AREA", "ADVOCACY", datetime(2025, 1, 1), L1, None),
        (GRACE, "INTEREST_AREA", "EVENTS", L1, None, None),
        (ADA, "INTEREST_AREA", "ADVOCACY", L2, None, None),
    ]


def test_unsubscribe_resubscribe_unsubscribe_leaves_two_closed_periods_in_order(db, open_adapter):
    adapter = open_adapter(personify_mode="opt_in")
    batch = [wb("SUBSCRIBE", ADA, "2026-01-10T15:00:00Z", GROUP), wb("UNSUBSCRIBE", ADA, T1, GROUP),
             wb("RESUBSCRIBE", ADA, T2, GROUP), wb("UNSUBSCRIBE", ADA, T3, GROUP)]  # fmt: skip
    assert [o.disposition for o in adapter.write(batch[:2])] == [Disposition.COMPLETED] * 2
    assert [o.disposition for o in adapter.write(batch[2:])] == [Disposition.COMPLETED] * 2
    assert ps.opt_ins(db) == [
        (ADA, "INTEREST_AREA", "ADVOCACY", datetime(2026, 1, 10, 10, 0), L1, None),
        (ADA, "INTEREST_AREA", "ADVOCACY", L2, L3, None),
    ]


def test_unknown_customer_and_unmapped_group_fail_with_their_code_and_neighbours_complete(db, open_adapter):
    ps.add_opt_in(db, ADA, "ADVOCACY", datetime(2025, 1, 1))
    before_opt_ins = ps.opt_ins(db)
    adapter = open_adapter(personify_mode="both")
    outcomes = adapter.write(
        [wb("UNSUBSCRIBE", "999999999", T1, GROUP), wb("UNSUBSCRIBE", ADA, T1, {"kind": "GROUP", "id": "g-99"}),
         wb("SUBSCRIBE", GRACE, T1, GROUP)]
    )  # fmt: skip
    assert [(o.disposition, o.error_code, o.kind) for o in outcomes] == [
        (Disposition.FAILED, "UNKNOWN_CUSTOMER", ErrorKind.REJECTED),
        (Disposition.FAILED, "UNMAPPED_GROUP", ErrorKind.REJECTED),
        (Disposition.COMPLETED, None, None),
    ]
    assert "g-99" in (outcomes[1].error_message or "")
    assert ps.opt_ins(db) == [*before_opt_ins, (GRACE, "INTEREST_AREA", "ADVOCACY", L1, None, None)]
    assert ps.activities(db) == [(GRACE, "SUBSCRIBE", L1, 'Subscribed to group "Advocacy" (g-12) via mailing link')]


def test_a_code_the_database_refuses_fails_that_record_alone(db, open_adapter):
    adapter = open_adapter(personify_mode="both", manage_unsubscribe={"group": {"g-12": "NOSUCHCODE"}})
    outcomes = adapter.write([wb("SUBSCRIBE", ADA, T1, GROUP), wb("SUBSCRIBE", GRACE, T1, GROUP, source="ADMIN")])
    assert [(o.disposition, o.error_code) for o in outcomes] == [(Disposition.FAILED, "UNKNOWN_CODE")] * 2
    adapter2 = open_adapter(personify_mode="activity", subscribe_activity_code="NOSUCH")
    ok = open_adapter(personify_mode="activity")
    assert adapter2.write([wb("SUBSCRIBE", ADA, T1, GROUP)])[0].error_code == "UNKNOWN_CODE"
    assert ok.write([wb("SUBSCRIBE", GRACE, T1, GROUP)])[0].disposition is Disposition.COMPLETED
    assert ps.opt_ins(db) == [] and ps.activities(db) == [(GRACE, "SUBSCRIBE", L1, 'Subscribed to group "Advocacy" (g-12) via mailing link')]


def test_a_replayed_batch_writes_nothing_twice(db, open_adapter, personify_url):
    ps.add_opt_in(db, ADA, "ADVOCACY", datetime(2025, 1, 1))
    batch = [wb("UNSUBSCRIBE", ADA, T1, GROUP), wb("RESUBSCRIBE", ADA, T2, GROUP), wb("SUBSCRIBE", GRACE, T1, ALL_MAIL)]
    first = open_adapter(personify_mode="both").write(batch)
    rows = (ps.opt_ins(db), ps.activities(db))
    again = open_adapter(personify_mode="both").write(batch)  # a new adapter: the state is in the database
    assert [o.disposition for o in first] == [o.disposition for o in again] == [Disposition.COMPLETED] * 3
    assert (ps.opt_ins(db), ps.activities(db)) == rows
    assert len(rows[0]) == 2 and len(rows[1]) == 3


def test_changes_from_personify_itself_are_not_written_back(db, open_adapter):
    [outcome] = open_adapter(personify_mode="both").write([wb("UNSUBSCRIBE", ADA, T1, GROUP, source="CRM_SYNC")])
    assert (outcome.disposition, outcome.error_code) == (Disposition.COMPLETED, "ORIGINATED_IN_CRM")
    assert ps.opt_ins(db) == [] and ps.activities(db) == []


def test_an_unreachable_database_retries_the_batch_as_an_outage(tmp_path):
    url = "postgresql+psycopg://localhost:1/nowhere"
    adapter = PersonifyAdapter(config(url, timeout_s=2), time_zone=ZONE)
    try:
        outcomes = adapter.write([wb("UNSUBSCRIBE", ADA, T1, GROUP)])
    finally:
        adapter.close()
    assert [(o.disposition, o.kind, o.error_code) for o in outcomes] == [(Disposition.RETRY, ErrorKind.OUTAGE, "DATABASE_UNREACHABLE")]


def test_a_locked_database_retries_the_batch_as_contention(tmp_path):
    url = f"sqlite:///{tmp_path / 'personify.db'}"
    engine = ps.create(url)
    ps.add_customer(engine, ADA)
    ps.add_codes(engine, ps.ACTIVITY_TYPE, ["UNSUBSCRIBE"])
    adapter = PersonifyAdapter(config(url, personify_mode="activity", timeout_s=0.2), time_zone=ZONE)
    adapter.write([])  # nothing: no connection yet
    with engine.connect() as holder:
        holder.exec_driver_sql("BEGIN EXCLUSIVE")
        outcomes = adapter.write([wb("UNSUBSCRIBE", ADA, T1, GROUP)])
        holder.rollback()
    adapter.close()
    engine.dispose()
    assert [(o.disposition, o.kind, o.error_code) for o in outcomes] == [(Disposition.RETRY, ErrorKind.CONTENTION, "DATABASE_LOCKED")]
