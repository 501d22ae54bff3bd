"""Seed 002 end to end: NDJSON files → `writeback publish` → the real broker and registry → one
`writeback serve` → windows released → the Salesforce simulator's records and `writeback list`.

Every assertion about what a writeback did reads the simulator's state (notes, flags, Tasks,
the requests it answered) or the ledger through the CLI, never the adapter's intentions.
Expected note texts are computed here from the event time and the account's zone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from writeback_dev.simulators.salesforce import SalesforceSim

from tests import test_service
from tests.builders import subscriber, wait_for
from tests.test_service import (
    Instances,
    by_status,
    held_subscriber_schedule,
    release_all_windows,
)
from writeback.contract.events import ActivityEvent, Event, SubscriberEvent, parse_event
from writeback.ingest.consume import writeback_id
from writeback.ledger import Ledger

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

service = test_service.service  # the fixture: real `writeback serve` processes and their topics

_SCRIPT = Path(sys.executable).parent / "writeback"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "writeback.cli"]
TASK_UPSERT = "/composite/sobjects/Task/Writeback_Id__c"


# -- helpers ------------------------------------------------------------------------------------


def stamp(moment: datetime, zone: str) -> str:
    """Seed 002's `mm/dd/yy hh:mm:ss tt`, computed independently of the adapter."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%m/%d/%y %I:%M:%S %p")


def connection_toml(sim: SalesforceSim, connection_id: str, *, defaults: bool = False, suppress: bool = False) -> str:
    """A Salesforce connection on the simulator; `defaults` leaves writebacks and schedules to
    the kind's defaults (002: Sent only, activity Manual), otherwise activity is manual and
    subscriber status held until `send-activity`; `suppress` leaves Email Opt Out alone."""
    lines = ["[[accounts.connections]]", f'id = "{connection_id}"', 'kind = "salesforce"']
    if not defaults:
        lines += [
            'writebacks = { mailing_activity = ["sent", "opened"] }',
            f'schedules = {{ subscriber = {held_subscriber_schedule()}, activity = {{ kind = "manual" }} }}',
        ]
    lines.append(
        f'crm = {{ login_url = "{sim.login_url}", client_id = "{sim.client_id}", '
        'client_secret = { env = "TEST_SF_SECRET" }'
        + (", suppress_email_opt_out = true" if suppress else "")
        + " }"
    )
    return "\n".join(lines) + "\n"


def configure(
    instances: Instances, tmp_path: Path, database_url: str, accounts: dict[str, tuple[str, list[str]]]
) -> dict[str, str]:
    """Write the settings file ({account: (zone, [connection toml])}) and point serve and the
    CLI at it and at the ledger; returns the environment both use."""
    parts = []
    for account, (zone, connections) in accounts.items():
        parts.append(f'[[accounts]]\nid = "{account}"\ntime_zone = "{zone}"\n')
        parts.extend(connections)
    settings = tmp_path / "settings.toml"
    settings.write_text("\n".join(parts))
    instances.env |= {"WRITEBACK_DATABASE_URL": database_url, "WRITEBACK_SETTINGS_FILE": str(settings)}
    return instances.env


def cli(env: dict[str, str], *args: str, timeout: float = 90) -> str:
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"writeback {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def publish_file(env: dict[str, str], path: Path, events: Sequence[Event], topic: str) -> None:
    """`writeback publish FILE --topic T` with the events as NDJSON, one per line."""
    if not path.exists():
        path.write_text("".join(json.dumps(e.to_json()) + "\n" for e in events))
    out = cli(env, "publish", str(path), "--topic", topic)
    assert out.strip().splitlines()[-1] == f"{len(events)} published, 0 rejected", out


def listed(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    """`writeback list --json` (all rows unless filtered)."""
    return json.loads(cli(env, "list", "--json", "--limit", "100000", *args))


def send_activity(env: dict[str, str], connection: str, *args: str) -> str:
    return cli(env, "send-activity", "--connection", connection, *args).strip()


def who(sim_id: str, record_type: str | None = None, email: str | None = None) -> dict[str, Any]:
    recipient: dict[str, Any] = {"integration_id": sim_id}
    if record_type:
        recipient["record_type"] = record_type
    if email:
        recipient["email"] = email
    return recipient


def sub_event(
    action: str,
    recipient: dict[str, Any],
    at: datetime,
    *,
    source: str = "MAILING_LINK",
    account: str = "acme",
    **extra: Any,
) -> SubscriberEvent:
    return subscriber(action, account=account, source=source, at=at, recipient=recipient, **extra)


def act_event(
    subcode: str, recipient: dict[str, Any], at: datetime, mailing: dict[str, str], *, account: str = "acme", **extra: Any
) -> ActivityEvent:
    event = parse_event(
        {
            "type": "activity",
            "event_id": str(uuid.uuid4()),
            "account_id": account,
            "occurred_at": at.isoformat(),
            "source": "CAMPAIGN",
            "recipient": recipient,
            "subcode": subcode,
            "mailing": mailing,
            **extra,
        }
    )
    assert isinstance(event, ActivityEvent)
    return event


def wait_consumed(kafka, group: str, topics: Sequence[str], timeout: float = 60) -> None:
    """Until the service's consumer group has committed every record now on `topics`."""
    reader = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in reader.list_topics(t, timeout=10).topics[t].partitions
        ]
        ends = {(tp.topic, tp.partition): reader.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}

        def caught_up() -> bool:
            committed = reader.committed(partitions, timeout=10)
            return all(tp.offset >= ends[(tp.topic, tp.partition)] for tp in committed if ends[(tp.topic, tp.partition)] > 0)

        wait_for(caught_up, timeout, "the service to consume and commit everything published")
    finally:
        reader.close()


def metrics_url(instances: Instances) -> str:
    wait_for(lambda: "metrics and probes on" in instances.output(), 60, "the metrics endpoint")
    return instances.output().split("metrics and probes on ")[1].split()[0]


def metric(url: str, sample: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def lags(url: str, topic: str) -> dict[str, float]:
    """`writeback_consumer_lag` by partition of one topic, as /metrics shows it."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        s.labels["partition"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "writeback_consumer_lag" and s.labels.get("topic") == topic
    }


def flag(sim: SalesforceSim, record_id: str) -> bool:
    record = sim.record(record_id)
    assert record is not None, record_id
    return bool(record["HasOptedOutOfEmail"])


def titles(sim: SalesforceSim, record_id: str) -> list[str]:
    return [n["Title"] for n in sim.notes_for(record_id)]


def data_writes(sim: SalesforceSim, since: int = 0) -> list[Any]:
    return [r for r in sim.request_log[since:] if r.method in ("POST", "PATCH") and "/services/data/" in r.path]


def count_rows(ledger: Ledger) -> int:
    return sum(ledger.counts().values())


# -- seed 002 subscriber writebacks: notes, flags, order, the origin rule, replay ----------------

ZONE = "America/Los_Angeles"  # the account's zone; PDT (UTC-7) from 2026-03-08
AM = datetime(2026, 3, 9, 17, 4, 5, tzinfo=UTC)  # 10:04:05 AM PDT
PM = datetime(2026, 3, 10, 1, 30, 59, tzinfo=UTC)  # 06:30:59 PM PDT, the UTC date is the next day
NOON = datetime(2026, 3, 9, 19, 15, tzinfo=UTC)  # 12:15:00 PM PDT
MIDNIGHT = datetime(2026, 3, 9, 7, 5, tzinfo=UTC)  # 12:05:00 AM PDT
WINTER = datetime(2026, 1, 15, 19, 5, 9, tzinfo=UTC)  # 11:05:09 AM PST (UTC-8)
KOLKATA = "Asia/Kolkata"  # UTC+05:30, another account's zone


def test_unsubscribe_bad_email_resubscribe_order_and_origin_rule_land_in_salesforce_and_replay_adds_nothing(
    service, kafka, sim: SalesforceSim, tmp_path: Path
) -> None:
    instances, topics = service
    env = configure(
        instances,
        tmp_path,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        {
            "acme": (ZONE, [connection_toml(sim, "acme-sf")]),
            "initech": (KOLKATA, [connection_toml(sim, "initech-sf", suppress=True)]),
        },
    )
    conn = "acme-sf"
    c_reason = sim.add_contact("Reason", "reason@example.org")
    lead_unsub = sim.add_lead("Unsub", "Initech", "lead.unsub@example.org")
    c_bad = sim.add_contact("Bad", "bad@example.org")
    c_resub = sim.add_contact("Resub", "resub@example.org", HasOptedOutOfEmail=True)
    lead_resub = sim.add_lead("Resub", "Initech", "lead.resub@example.org", HasOptedOutOfEmail=True)
    c_then_resub = sim.add_contact("UnsubThenResub")
    c_then_unsub = sim.add_contact("ResubThenUnsub")
    c_late_arrival = sim.add_contact("ArrivedOutOfOrder")
    c_crm = sim.add_contact("CrmOptOut", "crm@example.org", HasOptedOutOfEmail=True)  # opted out in Salesforce
    i_unsub = sim.add_contact("SuppressedUnsub")
    i_resub = sim.add_contact("SuppressedResub", HasOptedOutOfEmail=True)

    e = {
        "reason": sub_event("UNSUBSCRIBE", who(c_reason, "CONTACT", "reason@example.org"), AM, reason="Too many emails"),
        "lead_unsub": sub_event("UNSUBSCRIBE", who(lead_unsub, "LEAD"), PM),
        "bad": sub_event("BAD_EMAIL", who(c_bad, "CONTACT"), NOON, source="ACCOUNT_RULE"),
        "resub": sub_event("RESUBSCRIBE", who(c_resub, "CONTACT"), MIDNIGHT, source="ADMIN"),
        "lead_resub": sub_event("RESUBSCRIBE", who(lead_resub), WINTER, source="ADMIN"),  # Lead by its 00Q id
        "order_unsub": sub_event("UNSUBSCRIBE", who(c_then_resub), AM),
        "order_resub": sub_event("RESUBSCRIBE", who(c_then_resub), AM + timedelta(seconds=90), source="ADMIN"),
        "reverse_resub": sub_event("RESUBSCRIBE", who(c_then_unsub), AM, source="ADMIN"),
        "reverse_unsub": sub_event("UNSUBSCRIBE", who(c_then_unsub), AM + timedelta(seconds=90)),
        # published later-first: the order that counts is when they happened
        "late_resub": sub_event("RESUBSCRIBE", who(c_late_arrival), PM + timedelta(minutes=5), source="ADMIN"),
        "late_unsub": sub_event("UNSUBSCRIBE", who(c_late_arrival), PM),
        # the origin rule: the CRM's own opt-out, then a marketing-side resubscribe
        "crm_unsub": sub_event("UNSUBSCRIBE", who(c_crm), NOON, source="CRM_SYNC"),
        "crm_resub": sub_event("RESUBSCRIBE", who(c_crm), NOON + timedelta(minutes=1), source="ADMIN"),
    }
    # the connection that suppresses Email Opt Out (002), in an account in another zone
    suppressed = {
        "i_unsub": sub_event("UNSUBSCRIBE", who(i_unsub), AM, account="initech"),
        "i_resub": sub_event("RESUBSCRIBE", who(i_resub), PM, account="initech", source="ADMIN"),
    }
    wid = {name: writeback_id(event.event_id, conn) for name, event in e.items()}
    wid |= {name: writeback_id(event.event_id, "initech-sf") for name, event in suppressed.items()}
    written = [n for n in e if n not in ("crm_unsub", "crm_resub")]

    instances.start()
    events_file = tmp_path / "subscriber-events.ndjson"
    everything = [*e.values(), *suppressed.values()]
    publish_file(env, events_file, everything, topics["sub"])
    ledger = Ledger.connect(env["WRITEBACK_DATABASE_URL"])
    try:
        # every event one row, except the CRM's own unsubscribe (not written back to the CRM)
        wait_for(lambda: count_rows(ledger) == len(written) + 1 + 2, 60, lambda: "ingest: " + instances.output()[-3000:])
        wait_consumed(kafka, env["WRITEBACK_GROUP_ID"], [topics["sub"]])
        time.sleep(1.0)  # several flush passes: the held window holds everything back
        assert sim.records("Note") == [] and data_writes(sim) == []

        released = send_activity(env, conn, "--class", "subscriber")
        assert released == f"{len(written)} subscriber writebacks released for the next flush of {conn}"
        assert send_activity(env, "initech-sf", "--class", "subscriber") == (
            "2 subscriber writebacks released for the next flush of initech-sf"
        )
        wait_for(
            lambda: by_status(ledger).get("completed", 0) == len(written) + 2,
            60,
            lambda: "the flush: " + instances.output()[-3000:],
        )

        # unsubscribe with a reason: the seed sentence in the account's zone, the reason after it
        sentence = f"Contact unsubscribed from Informz on {stamp(AM, ZONE)}"
        assert sentence == "Contact unsubscribed from Informz on 03/09/26 10:04:05 AM"
        [note] = sim.notes_for(c_reason)
        assert note["Title"] == sentence
        body = note["Body"].splitlines()
        assert body[0] == sentence and "Reason: Too many emails" in body[1:]
        assert flag(sim, c_reason) is True
        # a Lead
        assert titles(sim, lead_unsub) == [f"Lead unsubscribed from Informz on {stamp(PM, ZONE)}"]
        assert titles(sim, lead_unsub) == ["Lead unsubscribed from Informz on 03/09/26 06:30:59 PM"]
        assert "Reason:" not in sim.notes_for(lead_unsub)[0]["Body"]
        assert flag(sim, lead_unsub) is True
        # bad email: an unsubscribe with reason "Bad Email"
        [bad] = sim.notes_for(c_bad)
        assert bad["Title"] == f"Contact unsubscribed from Informz on {stamp(NOON, ZONE)}" == (
            "Contact unsubscribed from Informz on 03/09/26 12:15:00 PM"
        )
        assert "Reason: Bad Email" in bad["Body"].splitlines()
        assert flag(sim, c_bad) is True
        # resubscribe: the flag cleared, on a Contact and on a Lead (standard time in January)
        assert titles(sim, c_resub) == ["Contact resubscribed to Informz on 03/09/26 12:05:00 AM"]
        assert titles(sim, c_resub) == [f"Contact resubscribed to Informz on {stamp(MIDNIGHT, ZONE)}"]
        assert flag(sim, c_resub) is False
        assert titles(sim, lead_resub) == ["Lead resubscribed to Informz on 01/15/26 11:05:09 AM"]
        assert flag(sim, lead_resub) is False

        # order within one window: both notes in order, the last change decides the flag
        later = stamp(AM + timedelta(seconds=90), ZONE)
        assert titles(sim, c_then_resub) == [
            f"Contact unsubscribed from Informz on {stamp(AM, ZONE)}",
            f"Contact resubscribed to Informz on {later}",
        ]
        assert flag(sim, c_then_resub) is False
        assert titles(sim, c_then_unsub) == [
            f"Contact resubscribed to Informz on {stamp(AM, ZONE)}",
            f"Contact unsubscribed from Informz on {later}",
        ]
        assert flag(sim, c_then_unsub) is True
        assert titles(sim, c_late_arrival) == [
            f"Contact unsubscribed from Informz on {stamp(PM, ZONE)}",
            f"Contact resubscribed to Informz on {stamp(PM + timedelta(minutes=5), ZONE)}",
        ]
        assert flag(sim, c_late_arrival) is False

        # suppressed Email Opt Out: the notes (in that account's zone), the flags left alone
        assert titles(sim, i_unsub) == ["Contact unsubscribed from Informz on 03/09/26 10:34:05 PM"]
        assert titles(sim, i_unsub) == [f"Contact unsubscribed from Informz on {stamp(AM, KOLKATA)}"]
        assert flag(sim, i_unsub) is False
        assert titles(sim, i_resub) == [f"Contact resubscribed to Informz on {stamp(PM, KOLKATA)}"]
        assert flag(sim, i_resub) is True

        # the origin rule: refused, in the writeback list, and Salesforce untouched by us
        [refused] = listed(env, "--status", "failed")
        assert refused["id"] == wid["crm_resub"]
        assert refused["error_code"] == "ORIGIN_MISMATCH"
        assert refused["connection_id"] == conn and refused["event_id"] == e["crm_resub"].event_id
        assert flag(sim, c_crm) is True
        assert sim.notes_for(c_crm) == []

        rows = {r["id"]: r for r in listed(env)}
        assert set(rows) == {wid[n] for n in [*written, *suppressed]} | {wid["crm_resub"]}
        assert {n: rows[wid[n]]["status"] for n in [*written, *suppressed]} == dict.fromkeys(
            [*written, *suppressed], "completed"
        )
        # each note carries the id of the writeback that wrote it: one note per writeback
        markers = [
            line.removeprefix("Informz writeback id: ")
            for n in sim.records("Note")
            for line in n["Body"].splitlines()
            if line.startswith("Informz writeback id: ")
        ]
        assert sorted(markers) == sorted(wid[n] for n in [*written, *suppressed])

        # -- replay: the same file again, after the window completed ----------------------------
        notes_before = sim.records("Note")
        people = [
            c_reason, lead_unsub, c_bad, c_resub, lead_resub, c_then_resub, c_then_unsub, c_late_arrival, c_crm,
            i_unsub, i_resub,
        ]  # fmt: skip
        flags_before = {p: flag(sim, p) for p in people}
        log_mark = len(sim.request_log)
        publish_file(env, events_file, everything, topics["sub"])
        wait_consumed(kafka, env["WRITEBACK_GROUP_ID"], [topics["sub"]])
        assert send_activity(env, conn, "--class", "subscriber").startswith("0 subscriber writebacks released")
        assert send_activity(env, "initech-sf", "--class", "subscriber").startswith("0 subscriber writebacks released")
        time.sleep(1.5)  # several flush passes
        assert data_writes(sim, log_mark) == []
        assert sim.records("Note") == notes_before
        assert {p: flag(sim, p) for p in people} == flags_before
        again = {r["id"]: r for r in listed(env)}
        assert again.keys() == rows.keys()
        assert {i: (r["status"], r["attempts"]) for i, r in again.items()} == {
            i: (r["status"], r["attempts"]) for i, r in rows.items()
        }
    finally:
        ledger.close()


# -- mailing activity: Tasks, 200 a call, a token expiry between windows, the defaults ----------

MAILING_1 = {"mailing_id": "m-spring", "name": "Spring Newsletter", "send_date": "2026-03-10T01:00:00Z"}
MAILING_2 = {"mailing_id": "m-summer", "name": "Summer Update", "send_date": "2026-03-11T16:00:00Z"}
SENT_AT = datetime(2026, 3, 10, 2, 30, tzinfo=UTC)  # 03/09 07:30 PM in Los Angeles: its date is the 9th
BERLIN = "Europe/Berlin"
BERLIN_AT = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)  # 03/10 00:30 in Berlin: its date is the 10th


def test_sent_and_opened_become_tasks_200_a_call_and_a_token_expiry_between_windows_is_invisible(
    service, kafka, sim: SalesforceSim, postgres_database: str, tmp_path: Path
) -> None:
    instances, topics = service
    conn, default_conn = "acme-sf", "globex-sf"
    env = configure(
        instances,
        tmp_path,
        postgres_database,
        {
            "acme": (ZONE, [connection_toml(sim, conn)]),
            "globex": (BERLIN, [connection_toml(sim, default_conn, defaults=True)]),
        },
    )
    contacts = [sim.add_contact(f"Person{i}", f"p{i}@example.org") for i in range(200)]
    sent = [
        act_event("Delivered", who(c, "CONTACT"), SENT_AT + timedelta(seconds=i), MAILING_1) for i, c in enumerate(contacts)
    ]
    opened = act_event(
        "Opened",
        who(contacts[0], "CONTACT"),
        SENT_AT + timedelta(hours=1),
        MAILING_1,
        open={"device": "iPhone", "client": "Apple Mail", "country": "US"},
    )
    clicked = act_event(
        "Clicked",
        who(contacts[0], "CONTACT"),
        SENT_AT + timedelta(hours=1, minutes=1),
        MAILING_1,
        click={"url": "https://example.org/offer", "target": "LINK"},
    )
    # a connection on defaults (002: Sent on, Opened off, frequency Manual), in another account
    globex = [sim.add_contact(f"Globex{i}") for i in range(2)]
    globex_events = [
        ev
        for i, c in enumerate(globex)
        for ev in (
            act_event("Delivered", who(c), BERLIN_AT + timedelta(seconds=i), MAILING_1, account="globex"),
            act_event("Opened", who(c), BERLIN_AT + timedelta(minutes=30), MAILING_1, account="globex"),
        )
    ]

    instances.start()
    url = metrics_url(instances)
    publish_file(env, tmp_path / "window-1.ndjson", [*sent, opened, clicked, *globex_events], topics["act"])
    ledger = Ledger.connect(postgres_database)
    try:
        wait_for(lambda: count_rows(ledger) == 201 + 2, 60, lambda: "ingest: " + instances.output()[-3000:])
        wait_consumed(kafka, env["WRITEBACK_GROUP_ID"], [topics["act"]])
        # caught up: every partition ingest fetched from shows no lag
        wait_for(lambda: lags(url, topics["act"]) and set(lags(url, topics["act"]).values()) == {0.0}, 30, "lag 0")
        # the click is counted, not written: no row at all, a drop for the Salesforce kind
        assert metric(url, "writeback_events_dropped_total", kind="salesforce", reason="not_for_kind") == 1
        # globex's Opened: the type is off by default there
        assert metric(url, "writeback_events_dropped_total", kind="salesforce", reason="activity_type_disabled") == 2
        assert data_writes(sim) == []

        # window 1: 201 Tasks for acme go in two calls, 200 and 1
        assert send_activity(env, conn, "--class", "activity") == (
            f"201 activity writebacks released for the next flush of {conn}"
        )
        wait_for(
            lambda: ledger.counts().get((conn, "completed"), 0) == 201, 60, "window 1: " + instances.output()[-3000:]
        )
        assert [r.records for r in sim.calls("PATCH", TASK_UPSERT)] == [200, 1]
        assert all(r.status == 200 for r in sim.calls("PATCH", TASK_UPSERT))
        assert len(sim.records("Task")) == 201

        [sent_task] = sim.tasks_for(contacts[1])
        assert sent_task["Activity_Group__c"] == "Sent" and sent_task["Activity__c"] == "Delivered"
        assert sent_task["Writeback_Id__c"] == writeback_id(sent[1].event_id, conn)
        assert sent_task["WhoId"] == contacts[1]
        assert sent_task["Status"] == "Completed"
        assert sent_task["ActivityDate"] == "2026-03-09"  # the account's date, not UTC's
        assert "Spring Newsletter" in sent_task["Subject"]
        description = sent_task["Description"].splitlines()
        assert "Mailing: Spring Newsletter" in description
        assert f"Mailing sent: {stamp(datetime(2026, 3, 10, 1, tzinfo=UTC), ZONE)}" in description

        tasks_0 = {t["Activity__c"]: t for t in sim.tasks_for(contacts[0])}
        assert set(tasks_0) == {"Delivered", "Opened"}  # the click wrote nothing
        opened_task = tasks_0["Opened"]
        assert opened_task["Activity_Group__c"] == "Opened"
        assert opened_task["Writeback_Id__c"] == writeback_id(opened.event_id, conn)
        assert "Spring Newsletter" in opened_task["Subject"]
        assert opened_task["ActivityDate"] == "2026-03-09"
        assert "Mailing: Spring Newsletter" in opened_task["Description"].splitlines()
        assert "iPhone" in opened_task["Description"] and "Apple Mail" in opened_task["Description"]

        acme_rows = listed(env, "--connection", conn)
        assert len(acme_rows) == 201 and {r["status"] for r in acme_rows} == {"completed"}
        assert writeback_id(clicked.event_id, conn) not in {r["id"] for r in acme_rows}
        # frequency Manual by default: globex waited through every flush so far
        globex_rows = listed(env, "--connection", default_conn)
        assert len(globex_rows) == 2 and {r["status"] for r in globex_rows} == {"pending"}
        assert all(sim.tasks_for(c) == [] for c in globex)

        # window 2, after every session expired: nobody can tell from the outcome
        sim.expire_tokens()
        mark = len(sim.request_log)
        window_2 = [
            act_event("Delivered", who(c, "CONTACT"), SENT_AT + timedelta(days=2, seconds=i), MAILING_2)
            for i, c in enumerate(contacts[:3])
        ] + [
            act_event("Opened", who(c, "CONTACT"), SENT_AT + timedelta(days=2, hours=1), MAILING_2)
            for c in contacts[3:5]
        ]
        publish_file(env, tmp_path / "window-2.ndjson", window_2, topics["act"])
        wait_for(lambda: count_rows(ledger) == 203 + 5, 60, "ingest of window 2")
        assert send_activity(env, conn, "--class", "activity", "--mailing", "m-summer") == (
            f"5 activity writebacks of mailing m-summer released for the next flush of {conn}"
        )
        wait_for(
            lambda: ledger.counts().get((conn, "completed"), 0) == 206, 60, "window 2: " + instances.output()[-3000:]
        )
        after = sim.request_log[mark:]
        assert any(r.status == 401 for r in after), "the expired session was never presented"
        assert any(r.path.endswith("/services/oauth2/token") and r.status == 200 for r in after)
        acme_rows = listed(env, "--connection", conn)
        assert len(acme_rows) == 206
        assert {(r["status"], r["attempts"], r["error_code"]) for r in acme_rows} == {("completed", 1, None)}
        assert listed(env, "--status", "failed") == []
        for i, c in enumerate(contacts[:5]):
            summer = [t for t in sim.tasks_for(c) if "Summer Update" in t["Subject"]]
            assert len(summer) == 1
            assert summer[0]["Activity__c"] == ("Delivered" if i < 3 else "Opened")
            assert summer[0]["ActivityDate"] == "2026-03-11"
        assert len(sim.records("Task")) == 206

        # replaying window 2 (same event ids) after it completed: no rows, no calls, no Tasks
        mark = len(sim.request_log)
        publish_file(env, tmp_path / "window-2.ndjson", window_2, topics["act"])
        wait_consumed(kafka, env["WRITEBACK_GROUP_ID"], [topics["act"]])
        assert metric(url, "writeback_duplicate_events_total") == 5  # seen again, and added nothing
        assert send_activity(env, conn, "--class", "activity").startswith("0 activity writebacks released")
        time.sleep(1.0)
        assert data_writes(sim, mark) == []
        assert len(sim.records("Task")) == 206 and count_rows(ledger) == 208

        # the defaults connection, released with send-activity's default class (activity)
        assert send_activity(env, default_conn) == f"2 activity writebacks released for the next flush of {default_conn}"
        wait_for(lambda: ledger.counts().get((default_conn, "completed"), 0) == 2, 60, "the defaults connection")
        for c in globex:
            [task] = sim.tasks_for(c)
            assert (task["Activity_Group__c"], task["Activity__c"]) == ("Sent", "Delivered")
            assert task["ActivityDate"] == "2026-03-10"  # Berlin's date
        assert by_status(ledger) == Counter({"completed": 208})
    finally:
        ledger.close()


# -- one bad recipient in a window of 200 ------------------------------------------------------


def test_a_window_of_200_with_one_deleted_and_one_unknown_recipient_completes_199_and_fails_1(
    service, kafka, sim: SalesforceSim, tmp_path: Path
) -> None:
    instances, topics = service
    conn = "acme-sf"
    env = configure(
        instances, tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", {"acme": (ZONE, [connection_toml(sim, conn)])}
    )
    contacts = [sim.add_contact(f"Person{i}", f"p{i}@example.org") for i in range(200)]
    deleted = contacts[57]
    unknown = "003Hs0ZZZZZZZZZ"  # a well-formed Contact id this org never issued
    unsubscribes = [
        sub_event("UNSUBSCRIBE", who(c, "CONTACT"), AM + timedelta(seconds=i)) for i, c in enumerate(contacts)
    ]
    sent = [
        act_event("Delivered", who(c, "CONTACT"), SENT_AT + timedelta(seconds=i), MAILING_1)
        for i, c in enumerate(contacts)
        if c != deleted
    ] + [act_event("Delivered", who(unknown, "CONTACT"), SENT_AT, MAILING_1)]
    assert len(sent) == 200

    instances.start()
    publish_file(env, tmp_path / "unsubscribes.ndjson", unsubscribes, topics["sub"])
    publish_file(env, tmp_path / "sent.ndjson", sent, topics["act"])
    ledger = Ledger.connect(env["WRITEBACK_DATABASE_URL"])
    try:
        wait_for(lambda: count_rows(ledger) == 400, 60, lambda: "ingest: " + instances.output()[-3000:])
        sim.delete(deleted)  # deleted in Salesforce while its writebacks waited for the window
        # the subscriber window first (one window of 200 unsubscribes), then the activity one
        assert send_activity(env, conn, "--class", "subscriber").startswith("200 subscriber writebacks released")
        wait_for(
            lambda: by_status(ledger) == Counter({"completed": 199, "failed": 1, "pending": 200}),
            60,
            lambda: "the subscriber window: " + instances.output()[-3000:],
        )
        assert [r.records for r in sim.calls("PATCH", "/composite/sobjects")] == [200]  # Email Opt Out
        assert [r.records for r in sim.calls("POST", "/composite/sobjects")] == [199]  # notes
        release_all_windows(ledger, [conn])
        wait_for(
            lambda: by_status(ledger) == Counter({"completed": 398, "failed": 2}),
            60,
            lambda: "the activity window: " + instances.output()[-3000:],
        )

        failed = {r["id"]: r for r in listed(env, "--status", "failed")}
        bad_unsub = writeback_id(unsubscribes[57].event_id, conn)
        bad_task = writeback_id(sent[-1].event_id, conn)
        assert set(failed) == {bad_unsub, bad_task}
        assert failed[bad_unsub]["error_code"] == "ENTITY_IS_DELETED"
        assert failed[bad_task]["error_code"] == "INVALID_CROSS_REFERENCE_KEY"
        completed = listed(env, "--status", "completed")
        assert len(completed) == 398
        assert Counter(r["wb_class"] for r in completed) == {"subscriber": 199, "activity": 199}

        # one call per kind of write for each window: the bad record rode along and alone failed
        assert [r.records for r in sim.calls("PATCH", "/composite/sobjects")] == [200]
        assert [r.records for r in sim.calls("POST", "/composite/sobjects")] == [199]
        assert [r.records for r in sim.calls("PATCH", TASK_UPSERT)] == [200]
        for i, c in enumerate(contacts):
            if c == deleted:
                continue
            assert flag(sim, c) is True
            assert titles(sim, c) == [f"Contact unsubscribed from Informz on {stamp(AM + timedelta(seconds=i), ZONE)}"]
            assert len(sim.tasks_for(c)) == 1
        gone = sim.record(deleted)
        assert gone is not None and gone["IsDeleted"] is True and gone["HasOptedOutOfEmail"] is False
        assert [n for n in sim.records("Note", include_deleted=True) if n["ParentId"] == deleted] == []
        assert len(sim.records("Note")) == 199 and len(sim.records("Task")) == 199
    finally:
        ledger.close()


# -- the origin rule holds for every later marketing resubscribe --------------------------------


def test_a_second_marketing_resubscribe_after_a_crm_opt_out_is_refused_too(
    service, kafka, sim: SalesforceSim, tmp_path: Path
) -> None:
    instances, topics = service
    conn = "acme-sf"
    env = configure(
        instances, tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", {"acme": (ZONE, [connection_toml(sim, conn)])}
    )
    contact = sim.add_contact("CrmOptOut", HasOptedOutOfEmail=True)
    events = [
        sub_event("UNSUBSCRIBE", who(contact), NOON, source="CRM_SYNC"),
        sub_event("RESUBSCRIBE", who(contact), NOON + timedelta(minutes=1), source="ADMIN"),
        sub_event("RESUBSCRIBE", who(contact), NOON + timedelta(minutes=2), source="ADMIN"),
    ]
    instances.start()
    publish_file(env, tmp_path / "events.ndjson", events, topics["sub"])
    ledger = Ledger.connect(env["WRITEBACK_DATABASE_URL"])
    try:
        wait_for(lambda: count_rows(ledger) == 2, 60, lambda: "ingest: " + instances.output()[-3000:])
        wait_consumed(kafka, env["WRITEBACK_GROUP_ID"], [topics["sub"]])
        send_activity(env, conn, "--class", "subscriber")
        wait_for(lambda: set(by_status(ledger)) <= {"completed", "failed"}, 60, "the flush")

        failed = {r["id"]: r["error_code"] for r in listed(env, "--status", "failed")}
        assert failed == {writeback_id(e.event_id, conn): "ORIGIN_MISMATCH" for e in events[1:]}
        assert flag(sim, contact) is True
        assert sim.notes_for(contact) == []
    finally:
        ledger.close()
