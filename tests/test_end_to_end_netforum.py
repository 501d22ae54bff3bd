"""Seed 000 end to end: NDJSON files → `writeback publish` → the real broker and registry →
`writeback serve` processes → windows released with `send-activity` → the netFORUM xWeb simulator.

Every assertion about what a writeback did reads the simulator's state (the Individual, its
Correspondence tab, the requests and faults it counted), the dead-letter topic or the ledger
through the CLI, never the adapter's intentions. Expected strings and dates are computed here
from the events and the account's zone, independently of the adapter's mapping.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from writeback_dev.simulators.netforum import NetforumSim

from tests import test_service
from tests.builders import wait_for
from tests.test_end_to_end import (
    CLI,
    act_event,
    cli,
    configure,
    count_rows,
    listed,
    metric,
    metrics_url,
    publish_file,
    send_activity,
    sub_event,
    wait_consumed,
)
from tests.test_service import Instances, by_status, release_all_windows
from writeback.contract.events import Event, SubscriberEvent
from writeback.ingest.consume import writeback_id
from writeback.ledger import Ledger

service = test_service.service  # the fixture: real `writeback serve` processes and their topics

PASSWORD_ENV = "TEST_NF_PASSWORD"
ZONE = "America/Chicago"  # the account's zone, and so the netFORUM site's: CST (UTC-6), CDT from 03/08
SEND = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # 09:00 AM CDT
MAILING = {"mailing_id": "m-spring", "name": "Spring Newsletter", "send_date": SEND.isoformat()}
OPENED_AT = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
UNSUB_AT = datetime(2026, 3, 11, 3, 4, 5, tzinfo=UTC)  # 03/10/2026 10:04:05 PM CDT: the UTC date is the next day
RESUB_AT = datetime(2026, 3, 12, 17, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def nf_server() -> Iterator[NetforumSim]:
    with NetforumSim() as running:
        yield running


@pytest.fixture
def nf(nf_server: NetforumSim) -> NetforumSim:
    """The netFORUM simulator, emptied of data, sessions, faults, counts and requests."""
    nf_server.reset()
    return nf_server


# -- helpers ------------------------------------------------------------------------------------


def netforum_toml(sim: NetforumSim, connection_id: str, *, writebacks: str | None = None, kind: str = "netforum") -> str:
    """A netFORUM connection on the simulator: mailing activity on a manual window (000 allows
    it), subscriber status on 000's ten-minute default, released early by `send-activity`."""
    lines = ["[[accounts.connections]]", f'id = "{connection_id}"', f'kind = "{kind}"']
    if writebacks:
        lines.append(f"writebacks = {writebacks}")
    if kind == "netforum":
        lines.append('schedules = { activity = { kind = "manual" } }')
    crm = f'xweb_url = "{sim.endpoint}", username = "{sim.user}", password = {{ env = "{PASSWORD_ENV}" }}, timeout_s = 10'
    if kind == "tracking":
        crm = f'product = "netforum", {crm}'
    lines.append(f"crm = {{ {crm} }}")
    return "\n".join(lines) + "\n"


def start_env(instances: Instances, sim: NetforumSim, tmp_path: Path, accounts: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    instances.env[PASSWORD_ENV] = sim.password
    return configure(instances, tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", accounts)


def key(cst_key: str, email: str | None = None) -> dict[str, Any]:
    """A recipient whose Integration ID is the customer key."""
    return {"integration_id": cst_key, **({"email": email} if email else {})}


def site_time(moment: datetime, zone: str = ZONE) -> datetime:
    """A moment as netFORUM stores it: naive, in the site's zone, to the millisecond."""
    local = moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    return local.replace(microsecond=local.microsecond // 1000 * 1000)


def unsubscribe_name(moment: datetime, source: str, reason: str | None = None) -> str:
    """000: "Date and Time of the unsubscribe (along with the source of the unsubscribe action)"."""
    text = f"{moment.astimezone(ZoneInfo(ZONE)).strftime('%m/%d/%Y %I:%M:%S %p')} via {source}"
    return f"{text}; reason: {reason}" if reason else text


def individual(sim: NetforumSim, cst_key: str) -> dict[str, Any]:
    """The Individual less its change stamp (a restored Individual has a newer one)."""
    found = sim.individual(cst_key)
    assert found is not None, cst_key
    return {k: v for k, v in found.items() if k != "cst_change_date"}


def tab(sim: NetforumSim, cst_key: str, *columns: str) -> list[tuple[Any, ...]]:
    """The Individual's Correspondence tab (Messaging Activity), the given columns of each row."""
    return [tuple(row[c] for c in columns) for row in sim.correspondence(cst_key)]


def clear_of_the_subscriber_window(margin: float) -> None:
    """Wait until the next subscriber window (000: every ten minutes, on the UTC-epoch grid) closes
    more than `margin` seconds from now, so that only `send-activity` releases what a test holds."""
    left = 600 - time.time() % 600
    if left < margin:
        time.sleep(left + 1)


def done(ledger: Ledger, total: int) -> bool:
    counts = by_status(ledger)
    return counts.get("completed", 0) + counts.get("failed", 0) == total


# -- seed 000's strings, dates and flags; resubscribe restores; optional types and mailings off --


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_seed_000_lands_in_netforum_exactly_and_a_resubscribe_restores_the_individual_in_one_or_two_windows(
    service, kafka, nf: NetforumSim, tmp_path: Path
) -> None:
    instances, topics = service
    conn, lean = "acme-nf", "globex-nf"
    env = start_env(
        instances,
        nf,
        tmp_path,
        {
            "acme": (ZONE, [netforum_toml(nf, conn)]),
            # Social Sharing and Click unchecked, and one mailing excluded from writebacks
            "globex": (ZONE, [netforum_toml(nf, lean, writebacks='{ mailing_activity = ["sent", "opened", "block", "bounce"], excluded_mailings = ["m-excluded"] }')]),
        },
    )
    ada = nf.add_individual("Ada", "Lovelace", "ada@example.org")
    grace = nf.add_individual("Grace", "Hopper", "grace@example.org")
    bad = nf.add_individual("Bad", "Address", "bounces@example.org")
    one_window = nf.add_individual("One", "Window", "one@example.org")
    two_windows = nf.add_individual("Two", "Windows", "two@example.org")
    lean_sent = nf.add_individual("Lean", "Sent", "lean@example.org")
    lean_off = nf.add_individual("Lean", "Off", "off@example.org")
    before = {p: (individual(nf, p), nf.correspondence(p)) for p in (one_window, two_windows)}

    activity = [
        act_event("Delivered", key(ada), SEND + timedelta(minutes=1), MAILING),
        act_event("Opened", key(ada), OPENED_AT, MAILING, open={"device": "iPhone", "client": "Apple Mail", "country": "United States"}),
        act_event("Clicked", key(ada), OPENED_AT + timedelta(minutes=1), MAILING, click={"url": "https://example.org/spring-offer", "target": "LINK"}),
        act_event("Clicked", key(ada), OPENED_AT + timedelta(minutes=2), MAILING, click={"url": "https://ads.example.org/banner", "target": "ADVERTISEMENT"}),
        act_event("Blocked", {"email": "ada@example.org"}, SEND + timedelta(minutes=2), MAILING),  # found by email
        act_event("HardBounce", key(ada), SEND + timedelta(minutes=3), MAILING),
        act_event("SocialShare", key(ada), OPENED_AT + timedelta(minutes=3), MAILING, social={"network": "LinkedIn"}),
    ]
    excluded = {**MAILING, "mailing_id": "m-excluded", "name": "Excluded Mailing"}
    globex = [
        act_event("Delivered", key(lean_sent), SEND, MAILING, account="globex"),
        act_event("Clicked", key(lean_off), OPENED_AT, MAILING, account="globex", click={"url": "https://example.org/x", "target": "LINK"}),
        act_event("SocialShare", key(lean_off), OPENED_AT, MAILING, account="globex", social={"network": "Facebook"}),
        act_event("Delivered", key(lean_off), SEND, excluded, account="globex"),
        act_event("Opened", key(lean_off), OPENED_AT, excluded, account="globex"),
    ]
    subscribers = [
        sub_event("UNSUBSCRIBE", key(grace), UNSUB_AT, source="ADMIN", account="acme", reason="Too many emails"),
        sub_event("UNSUBSCRIBE", {"email": "bounces@example.org"}, UNSUB_AT, account="acme"),
        sub_event("BAD_EMAIL", key(bad), UNSUB_AT + timedelta(minutes=1), source="ACCOUNT_RULE", account="acme", reason="Mailbox does not exist"),
        sub_event("UNSUBSCRIBE", key(one_window), UNSUB_AT, account="acme"),
        sub_event("RESUBSCRIBE", key(one_window), RESUB_AT, source="ADMIN", account="acme"),
        sub_event("UNSUBSCRIBE", key(two_windows), UNSUB_AT, source="SUBSCRIPTION_PAGE", account="acme"),
        # subscriber status of a recipient of the excluded mailing: never excluded
        sub_event("UNSUBSCRIBE", key(lean_off), UNSUB_AT, account="globex"),
    ]
    # a mailing the operator excludes with the CLI while the service runs
    by_cli = act_event("Delivered", key(ada), SEND, {**MAILING, "mailing_id": "m-cli", "name": "Excluded by CLI"})
    rows = len(activity) + len(subscribers) + 1  # globex: the one Sent in a mailing not excluded

    clear_of_the_subscriber_window(150)
    instances.start()
    url = metrics_url(instances)  # serve has applied the settings file by then
    excluded_now = cli(env, "settings", "exclude-mailing", "--connection", conn, "--mailing", "m-cli")
    assert excluded_now.startswith(f"mailing m-cli excluded from {conn}'s writebacks")
    time.sleep(2.0)  # WRITEBACK_SETTINGS_TTL_S=1: the running instance reads the stored settings again
    publish_file(env, tmp_path / "activity.ndjson", [*activity, by_cli, *globex], topics["act"])
    publish_file(env, tmp_path / "subscribers.ndjson", subscribers, topics["sub"])
    ledger = Ledger.connect(env["WRITEBACK_DATABASE_URL"])
    try:
        wait_for(lambda: count_rows(ledger) == rows, 60, lambda: "ingest: " + instances.output()[-3000:])
        wait_consumed(kafka, env["WRITEBACK_GROUP_ID"], [topics["act"], topics["sub"]])
        # the unchecked types and the excluded mailing: counted drops, no rows
        assert metric(url, "writeback_events_dropped_total", kind="netforum", reason="activity_type_disabled") == 2
        assert metric(url, "writeback_events_dropped_total", kind="netforum", reason="mailing_excluded") == 3
        assert nf.calls("InsertFacadeObject") == []  # activity waits for its manual window

        for connection in (conn, lean):
            for wb_class in ("activity", "subscriber"):
                assert send_activity(env, connection, "--class", wb_class).endswith(f"released for the next flush of {connection}")
        wait_for(lambda: by_status(ledger).get("completed", 0) == rows, 60, lambda: "the flush: " + instances.output()[-3000:])

        # mailing activity: "Informz Mailing", the subcode by type, 000's message names
        assert sorted(tab(nf, ada, "cma_activity_code", "cma_activity_subcode", "cma_message_name")) == sorted([
            ("Informz Mailing", "Sent", "Mailing was sent"),
            ("Informz Mailing", "Open", "Open | iPhone | Apple Mail | United States"),  # Mailing Action | Device Used | Client Used | Country
            ("Informz Mailing", "Click", "Hyperlink was clicked"),
            ("Informz Mailing", "Click", "Advertisement was clicked"),
            ("Informz Mailing", "Block", "Mailing was blocked"),
            ("Informz Mailing", "Bounce", "Mailing bounced (hard bounce)"),
            ("Informz Mailing", "Social Sharing", "Mailing was shared on LinkedIn"),
        ])
        email_key = nf.individual(ada)["eml_key"]
        ada_ids = {writeback_id(e.event_id, conn) for e in activity}
        for row in nf.correspondence(ada):
            assert row["cma_activity_date"] == site_time(SEND) == datetime(2026, 3, 10, 9, 0)  # Date = the mailing's send date
            assert (row["cma_eml_key"], row["cma_eml_address"]) == (email_key, "ada@example.org")  # Email Address
            assert row["cma_message_id"] == "m-spring" and row["cma_activity_id"] in ada_ids
        assert {r["cma_activity_id"] for r in nf.correspondence(ada)} == ada_ids
        assert not any("example.org/" in str(v) for r in nf.activities() for v in r.values())  # link label and URL not written

        # unsubscribe: Do Not Contact by Email set, "InformzUnsubscribe" with date, time and source
        assert individual(nf, grace)["cst_no_email_flag"] is True
        assert tab(nf, grace, "cma_activity_code", "cma_activity_subcode", "cma_message_name", "cma_activity_date") == [
            ("InformzUnsubscribe", None, unsubscribe_name(UNSUB_AT, "administrator", "Too many emails"), site_time(UNSUB_AT)),
        ]
        assert unsubscribe_name(UNSUB_AT, "administrator") == "03/10/2026 10:04:05 PM via administrator"
        assert site_time(UNSUB_AT) == datetime(2026, 3, 10, 22, 4, 5)  # the unsubscribe's date in the site's zone
        assert individual(nf, bad)["cst_no_email_flag"] is True  # an unsubscribe found by email
        assert tab(nf, bad, "cma_activity_code", "cma_message_name") == [
            ("InformzUnsubscribe", unsubscribe_name(UNSUB_AT, "mailing link")),
        ]
        # bad email: the primary email's bad-email status
        marked = individual(nf, bad)
        assert (marked["eml_invalid_flag"], marked["eml_invalid_reason"]) == (True, "Mailbox does not exist")
        # unsubscribe then resubscribe in one window: the Individual as it was
        assert (individual(nf, one_window), nf.correspondence(one_window)) == before[one_window]
        assert tab(nf, two_windows, "cma_activity_code", "cma_message_name") == [
            ("InformzUnsubscribe", unsubscribe_name(UNSUB_AT, "subscription page")),
        ]
        assert individual(nf, two_windows)["cst_no_email_flag"] is True

        # the lean connection: the Sent it has on; nothing of the unchecked types or the excluded
        # mailing, while that recipient's unsubscribe is written
        assert tab(nf, lean_sent, "cma_activity_code", "cma_activity_subcode") == [("Informz Mailing", "Sent")]
        assert tab(nf, lean_off, "cma_activity_code") == [("InformzUnsubscribe",)]
        assert individual(nf, lean_off)["cst_no_email_flag"] is True
        assert {r["event_id"] for r in listed(env, "--connection", lean)} == {globex[0].event_id, subscribers[-1].event_id}

        # resubscribe in a second window: the Individual as it was before the unsubscribe
        publish_file(env, tmp_path / "resubscribe.ndjson", [sub_event("RESUBSCRIBE", key(two_windows), RESUB_AT, source="ADMIN")], topics["sub"])
        wait_for(lambda: count_rows(ledger) == rows + 1, 60, "ingest of the resubscribe")
        assert send_activity(env, conn, "--class", "subscriber").endswith(f"released for the next flush of {conn}")
        wait_for(lambda: by_status(ledger).get("completed", 0) == rows + 1, 60, lambda: "window 2: " + instances.output()[-3000:])
        assert (individual(nf, two_windows), nf.correspondence(two_windows)) == before[two_windows]
        # removed, not erased: both unsubscribe rows are soft-deleted (cma_delete_flag)
        for person in (one_window, two_windows):
            assert [r["cma_delete_flag"] for r in nf.correspondence(person, include_deleted=True)] == [True]

        assert listed(env, "--status", "failed") == [] and nf.fault_count() == 0
    finally:
        ledger.close()


# -- the rules that cannot be configured away ---------------------------------------------------


@pytest.mark.parametrize(
    ("writebacks", "schedules", "field", "reason"),
    [
        ("{ unsubscribe = false }", None, "writebacks.unsubscribe", "cannot be turned off"),
        ("{ resubscribe = false }", None, "writebacks.resubscribe", "cannot be turned off"),
        ("{ bad_email = false }", None, "writebacks.bad_email", "cannot be turned off"),
        (None, '{ subscriber = { kind = "manual" } }', "schedules.subscriber", "subscriber status cannot be manual"),
        (None, '{ subscriber = { kind = "hourly", minute = 0 } }', "schedules.subscriber", "at least every 10 minutes (seed 000)"),
        (None, '{ subscriber = { kind = "interval", minutes = 11 } }', "schedules.subscriber", "this schedule fires every 11 minutes"),
    ],
)  # fmt: skip
def test_settings_validate_refuses_turning_off_000s_mandatory_writebacks_naming_the_field(
    tmp_path: Path, writebacks: str | None, schedules: str | None, field: str, reason: str
) -> None:
    lines = ['[[accounts]]', 'id = "acme"', f'time_zone = "{ZONE}"', "", "[[accounts.connections]]", 'id = "acme-nf"', 'kind = "netforum"']
    if writebacks:
        lines.append(f"writebacks = {writebacks}")
    if schedules:
        lines.append(f"schedules = {schedules}")
    lines.append('crm = { xweb_url = "https://members.acme.org/xweb/secure/netFORUMXML.asmx", username = "informz", password = { env = "X" } }')
    settings = tmp_path / "settings.toml"
    settings.write_text("\n".join(lines) + "\n")
    refused = subprocess.run([*CLI, "settings", "validate", str(settings)], capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1, refused.stdout
    assert f"accounts[acme].connections[acme-nf].{field}" in refused.stderr
    assert reason in refused.stderr
    assert "valid" not in refused.stdout

    # the same connection without the change is valid: the refusal is about that field alone
    settings.write_text("\n".join(line for line in lines if not line.startswith(("writebacks", "schedules"))) + "\n")
    accepted = subprocess.run([*CLI, "settings", "validate", str(settings)], capture_output=True, text=True, timeout=60, check=False)
    assert accepted.returncode == 0, accepted.stderr
    assert "subscriber schedule: every 10 minutes" in accepted.stdout


# -- seed 001 with netFORUM as the integrated product -------------------------------------------


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_a_tracking_connection_writes_001s_code_subcode_pairs_as_messaging_activity(
    service, kafka, nf: NetforumSim, tmp_path: Path
) -> None:
    instances, topics = service
    conn = "initech-tracking"
    env = start_env(instances, nf, tmp_path, {"initech": (ZONE, [netforum_toml(nf, conn, kind="tracking")])})
    pat = nf.add_individual("Pat", "Member", "pat@example.org")
    before = individual(nf, pat)
    at = OPENED_AT
    events: list[Event] = [
        act_event("Delivered", key(pat), at, MAILING, account="initech"),
        act_event("Opened", key(pat), at + timedelta(minutes=1), MAILING, account="initech"),
        act_event("SoftBounce", key(pat), at + timedelta(minutes=2), MAILING, account="initech"),
        act_event("WebsiteVisit", key(pat), at + timedelta(minutes=3), MAILING, account="initech"),
        act_event("SurveySubmit", key(pat), at + timedelta(minutes=4), MAILING, account="initech", name="Member Survey"),
        sub_event("UNSUBSCRIBE", key(pat), at + timedelta(minutes=5), account="initech"),
        sub_event("SUPPRESS", key(pat), at + timedelta(minutes=6), account="initech", source="ADMIN", suppression="ManualSuppress"),
        sub_event("RESUBSCRIBE", key(pat), at + timedelta(minutes=7), account="initech", source="ADMIN"),  # no 001 pair
        act_event("Delivered", {"email": "pat@example.org"}, at, MAILING, account="initech"),  # no Integration ID
    ]
    instances.start()
    publish_file(env, tmp_path / "activity.ndjson", [e for e in events if not isinstance(e, SubscriberEvent)], topics["act"])
    publish_file(env, tmp_path / "subscribers.ndjson", [e for e in events if isinstance(e, SubscriberEvent)], topics["sub"])
    ledger = Ledger.connect(env["WRITEBACK_DATABASE_URL"])
    try:
        wait_for(lambda: count_rows(ledger) == len(events) - 1, 60, lambda: "ingest: " + instances.output()[-3000:])
        for wb_class in ("activity", "subscriber"):
            send_activity(env, conn, "--class", wb_class)  # 001: once daily; released now
        wait_for(lambda: done(ledger, len(events) - 1), 60, lambda: "the flush: " + instances.output()[-3000:])

        assert tab(nf, pat, "cma_activity_code", "cma_activity_subcode", "cma_activity_date") == [
            ("Sent", "Delivered", site_time(at)),
            ("Opened", "Opened", site_time(at + timedelta(minutes=1))),
            ("Sent", "SoftBounce", site_time(at + timedelta(minutes=2))),
            ("WebsiteVisit", "WebsiteVisit", site_time(at + timedelta(minutes=3))),
            ("Survey Submit", "Survey Submit", site_time(at + timedelta(minutes=4))),
            ("Unsubscribed", "Unsubscribed", site_time(at + timedelta(minutes=5))),
            ("Suppressed", "ManualSuppress", site_time(at + timedelta(minutes=6))),
        ]
        names = {r["cma_activity_subcode"]: r["cma_message_name"] for r in nf.correspondence(pat)}
        assert names["Survey Submit"] == "Member Survey" and names["Delivered"] == "Spring Newsletter"
        assert individual(nf, pat) == before  # tracking records activity; it sets no flag

        failed = listed(env, "--status", "failed")
        assert [(r["event_id"], r["error_code"]) for r in failed] == [(events[-1].event_id, "UNKNOWN_CUSTOMER")]
        assert by_status(ledger) == Counter({"completed": len(events) - 2, "failed": 1})
    finally:
        ledger.close()


# -- token expiry mid-flush, unknown customers, dead letters, the fault count --------------------


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_token_expiry_mid_flush_is_invisible_and_unknown_customers_are_dead_lettered_without_burning_faults(
    service, kafka, nf: NetforumSim, tmp_path: Path, consume_all, serde
) -> None:
    instances, topics = service
    conn = "acme-nf"
    env = start_env(instances, nf, tmp_path, {"acme": (ZONE, [netforum_toml(nf, conn)])})
    people = [nf.add_individual(f"Member{i}", "Sent", f"member{i}@example.org") for i in range(250)]
    known = [act_event("Delivered", key(p), SEND + timedelta(seconds=i), MAILING) for i, p in enumerate(people)]
    strangers = [
        *(act_event("Delivered", key(str(uuid.uuid4())), SEND, MAILING) for _ in range(3)),  # no such cst_key
        act_event("Delivered", {"email": "nobody@example.org"}, SEND, MAILING),  # no such primary email
        act_event("Delivered", key("CK-12345"), SEND, MAILING),  # not a customer key at all
    ]
    expected_faults = {writeback_id(e.event_id, conn) for e in strangers}

    instances.start()
    publish_file(env, tmp_path / "window.ndjson", [*known, *strangers], topics["act"])
    ledger = Ledger.connect(env["WRITEBACK_DATABASE_URL"])
    try:
        wait_for(lambda: count_rows(ledger) == len(known) + len(strangers), 60, lambda: "ingest: " + instances.output()[-3000:])
        # every call held a moment, so the expiry lands between the first insert and the next
        nf.slow_next(40, 0.5)
        expired = threading.Event()

        def expire_after_the_first_insert() -> None:
            deadline = time.monotonic() + 60
            while not nf.calls("InsertFacadeObject") and time.monotonic() < deadline:
                time.sleep(0.01)
            response = httpx.post(f"{nf.url}/__sim/faults", json={"kind": "expire_tokens"}, timeout=10)
            assert response.status_code == 200
            expired.set()

        watcher = threading.Thread(target=expire_after_the_first_insert)
        watcher.start()
        assert send_activity(env, conn) == f"{len(known) + len(strangers)} activity writebacks released for the next flush of {conn}"
        wait_for(lambda: done(ledger, len(known) + len(strangers)), 90, lambda: "the flush: " + instances.output()[-3000:])
        watcher.join(10)
        assert expired.is_set()
        nf.clear_faults()

        # the expiry was met mid-flush, and nobody can tell from the outcome
        inserts = nf.calls("InsertFacadeObject")
        assert [r.fault for r in nf.request_log].count("TokenExpired") == 1
        assert [r.objects for r in inserts if r.status == 200] == [100, 100, 50]
        assert len(nf.calls("Authenticate")) == 2
        completed = listed(env, "--status", "completed")
        assert len(completed) == len(known)
        assert {(r["attempts"], r["error_code"]) for r in completed} == {(1, None)}
        for person in people:
            assert tab(nf, person, "cma_activity_code", "cma_activity_subcode") == [("Informz Mailing", "Sent")]
        assert len(nf.activities(include_deleted=True)) == len(known)

        # unknown customers: a clear code, dead-lettered on <prefix>netforum, no fault burned
        failed = {r["id"]: r for r in listed(env, "--status", "failed")}
        assert set(failed) == expected_faults
        assert {r["error_code"] for r in failed.values()} == {"UNKNOWN_CUSTOMER"}
        dlq = env["WRITEBACK_DEAD_LETTER_PREFIX"] + "netforum"
        letters = [serde.deserialize_dead_letter(m.topic(), m.value()) for m in consume_all(dlq, expected=len(strangers), timeout=30)]
        assert {(d.writeback_id, d.connection_id, d.crm_kind, d.error_code) for d in letters} == {
            (w, conn, "netforum", "UNKNOWN_CUSTOMER") for w in expected_faults
        }
        assert all(d.original for d in letters)  # replayable once the Individual exists
        assert not any("nobody@example.org" in d.error_message for d in letters)
        # at most one fault each; in fact none: an empty GetQuery is not a fault, and the one
        # fault of the day is the expired token
        assert nf.fault_count() == 1 <= len(strangers) + 1
        assert nf.lockout() is None
    finally:
        ledger.close()


# -- SIGKILL during a netFORUM flush, then a restart ---------------------------------------------

ROUND_CALLS = 8  # Authenticate, GetQuery Individuals, GetQuery written rows, 3 updates, 2 inserts


@pytest.mark.kafka
@pytest.mark.timeout(600)  # 16 process starts and 10 CLI publishes on a busy 2-core machine
def test_a_kill_during_a_netforum_flush_then_a_restart_leaves_each_activity_exactly_once(
    service, kafka, nf: NetforumSim, tmp_path: Path
) -> None:
    """Five rounds. Each: three Individuals get an unsubscribe, a Sent and an Open; one instance
    ingests them (windows held), then a second, with every xWeb call held 0.4 s, is killed with
    SIGKILL while its k-th call is held (k walks over the three flag updates and the two
    inserts), and the held call is carried out after the kill; the restarted service then
    finishes. Its answer was lost, so the restart must find what landed and write nothing twice."""
    instances, topics = service
    conn = "acme-nf"
    env = start_env(instances, nf, tmp_path, {"acme": (ZONE, [netforum_toml(nf, conn)])})
    env["WRITEBACK_INSTANCE_ID"] = "serve-nf"  # static membership: a restart gets the partitions at once
    ledger = Ledger.connect(env["WRITEBACK_DATABASE_URL"])
    rng = random.Random(2026)
    people: list[str] = []
    events: list[Event] = []
    landed_unrecorded: list[int] = []  # per round: writes the killed instance made but never recorded
    ingesting = instances.start()
    try:
        for round_ in range(5):
            clear_of_the_subscriber_window(45)  # a round's rows wait for the kill, not for the grid
            chunk_people = [nf.add_individual(f"R{round_}", f"P{i}", f"r{round_}p{i}@example.org") for i in range(3)]
            at = UNSUB_AT + timedelta(hours=round_)
            chunk: list[Event] = []
            for i, person in enumerate(chunk_people):
                chunk += [
                    sub_event("UNSUBSCRIBE", key(person), at + timedelta(seconds=i)),
                    act_event("Delivered", key(person), at + timedelta(seconds=10 + i), MAILING),
                    act_event("Opened", key(person), at + timedelta(seconds=20 + i), MAILING),
                ]
            people += chunk_people
            events += chunk
            publish_file(env, tmp_path / f"round-{round_}-act.ndjson", [e for e in chunk if not isinstance(e, SubscriberEvent)], topics["act"])
            publish_file(env, tmp_path / f"round-{round_}-sub.ndjson", [e for e in chunk if isinstance(e, SubscriberEvent)], topics["sub"])
            total = len(events)
            wait_for(lambda n=total: count_rows(ledger) == n, 60, lambda: "ingest: " + instances.output()[-3000:])
            ingesting.send_signal(signal.SIGTERM)
            ingesting.wait(30)

            release_all_windows(ledger, [conn])
            nf.slow_next(ROUND_CALLS, 0.4)
            mark = len(nf.request_log)
            victim = instances.start()
            k = 3 + round_ % 5  # the held call at the kill: update 1-3, the unsubscribe rows, the activity rows
            wait_for(lambda at=mark + k: len(nf.request_log) >= at and nf.in_flight > 0, 60, f"call {k} of round {round_}")
            time.sleep(rng.uniform(0.0, 0.2))
            victim.kill()  # SIGKILL: no cleanup, rows left in flight, the lease left behind
            victim.wait(10)
            nf.wait_idle()  # the held call is carried out after its client died
            nf.clear_faults()
            landed_unrecorded.append(_unrecorded(nf, ledger, conn, chunk, chunk_people))

            ingesting = instances.start()  # the restart: it finishes the round, and ingests the next
            wait_for(lambda n=total: by_status(ledger).get("completed", 0) == n, 90, lambda: "the restart: " + instances.output()[-3000:])
    finally:
        ingesting.send_signal(signal.SIGTERM)
        ingesting.wait(30)

    try:
        assert all(n >= 1 for n in landed_unrecorded), landed_unrecorded  # every kill cut off an answer
        assert by_status(ledger) == Counter({"completed": len(events)})
        by_person: dict[str, set[str]] = {}
        for event in events:
            assert event.recipient.integration_id is not None
            by_person.setdefault(event.recipient.integration_id, set()).add(writeback_id(event.event_id, conn))
        for person in people:
            rows = nf.correspondence(person, include_deleted=True)
            assert sorted(r["cma_activity_id"] for r in rows) == sorted(by_person[person]), "an activity was lost or written twice"
            assert Counter((r["cma_activity_code"], r["cma_activity_subcode"]) for r in rows) == {
                ("InformzUnsubscribe", None): 1, ("Informz Mailing", "Sent"): 1, ("Informz Mailing", "Open"): 1
            }
            assert individual(nf, person)["cst_no_email_flag"] is True
        inserted = sum(r.objects for r in nf.calls("InsertFacadeObject") if r.status == 200)
        assert inserted == len(events) == len(nf.activities(include_deleted=True))
        assert nf.fault_count() == 0
    finally:
        ledger.close()


def _unrecorded(nf: NetforumSim, ledger: Ledger, conn: str, chunk: list[Event], people: list[str]) -> int:
    """Writes in netFORUM the ledger does not know of: activity rows of writebacks not completed,
    and Do Not Contact flags set for unsubscribes not completed."""
    statuses = ledger.statuses([writeback_id(e.event_id, conn) for e in chunk])
    open_ids = {i for i, s in statuses.items() if s != "completed"}
    rows = sum(1 for person in people for r in nf.correspondence(person) if r["cma_activity_id"] in open_ids)
    flags = sum(
        1
        for e in chunk
        if isinstance(e, SubscriberEvent)
        and writeback_id(e.event_id, conn) in open_ids
        and individual(nf, e.recipient.integration_id or "")["cst_no_email_flag"]
    )
    return rows + flags
