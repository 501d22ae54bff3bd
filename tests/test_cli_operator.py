"""Operator commands: the writeback list, one writeback, settings, send activity now, retry.

Each runs the real `writeback` CLI against a real ledger (SQLite file and PostgreSQL).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from writeback import settings as wb_settings
from writeback.cli import app
from writeback.ledger import Ledger, NewWriteback, RowResult
from writeback.ledger.rows import Status, WritebackClass

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=2)
SUB, ACT = WritebackClass.SUBSCRIBER, WritebackClass.ACTIVITY

SETTINGS_TOML = """
[[accounts]]
id = "acme"
name = "Acme Association"
time_zone = "America/Chicago"

[[accounts.connections]]
id = "acme-sf"
kind = "salesforce"
crm = { login_url = "https://acme.my.salesforce.com", client_id = "acme", client_secret = { env = "ACME_SF_SECRET" } }

[[accounts.connections]]
id = "acme-nf"
kind = "netforum"
crm = { xweb_url = "https://members.acme.org/xweb/secure/netFORUMXML.asmx", username = "informz", password = { env = "ACME_NF_PASSWORD" } }
writebacks = { mailing_activity = ["sent", "opened", "click"] }
schedules.activity = { kind = "weekly", day = "friday", at = "17:30" }

[[accounts]]
id = "globex"
time_zone = "Europe/London"

[[accounts.connections]]
id = "globex-tr"
kind = "tracking"
crm = { login_url = "https://globex.my.salesforce.com", client_id = "globex", client_secret = { env = "GLOBEX_SF_SECRET" } }
"""

runner = CliRunner()


def wb(id: str, *, connection: str = "acme-sf", account: str = "acme", wb_class=ACT,
       recipient: str = "pat@example.org", mailing: str | None = "m1",
       closes: datetime | None = None, minutes: int = 0) -> NewWriteback:  # fmt: skip
    return NewWriteback(
        id=id,
        account_id=account,
        connection_id=connection,
        wb_class=wb_class,
        event_type=str(wb_class),
        event_id=f"ev-{id}",
        recipient_key=recipient,
        occurred_at=T0 + timedelta(minutes=minutes),
        window_closes_at=closes,
        payload=json.dumps({"action": "SENT", "mailing_name": f"Spring newsletter {id}"}),
        mailing_id=mailing if wb_class is ACT else None,
    )


def fail(ledger: Ledger, id: str, connection: str, code: str = "INVALID_ID", message: str = "msg") -> None:
    """Drive a row to `failed` the way the flusher does: claim it, then record the outcome."""
    assert [w.id for w in ledger.claim_due(connection, "flusher-1", LATER, limit=10)] == [id]
    ledger.record([RowResult(id, Status.FAILED, code, message)], "flusher-1", LATER)


def complete(ledger: Ledger, id: str, connection: str) -> None:
    assert [w.id for w in ledger.claim_due(connection, "flusher-1", LATER, limit=10)] == [id]
    ledger.record([RowResult(id, Status.COMPLETED)], "flusher-1", LATER)


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Output with rich's box drawing and line wrapping folded away, for phrase matching."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS_TOML)
    return path


@pytest.fixture
def seeded(ledger: Ledger, database_url: str) -> str:
    """A small writeback list: pending, completed and failed rows on two accounts.

    acme-sf  sf-pending   pending   (manual window, mailing m1)
    acme-nf  nf-done      completed (mailing m2)
    acme-nf  nf-failed    failed    INVALID_ID
    globex-tr tr-pending  pending   subscriber, updated later than the rest
    """
    ledger.insert([wb("sf-pending")], now=T0)
    ledger.insert([wb("nf-done", connection="acme-nf", mailing="m2", closes=T0)], now=T0)
    complete(ledger, "nf-done", "acme-nf")
    ledger.insert(
        [wb("nf-failed", connection="acme-nf", recipient="lee@example.org", closes=T0, minutes=1)],
        now=T0,
    )
    fail(ledger, "nf-failed", "acme-nf", message="No customer with key [CK-1]\nin netFORUM")
    ledger.insert(
        [wb("tr-pending", connection="globex-tr", account="globex", wb_class=SUB, closes=LATER)],
        now=LATER + timedelta(minutes=5),
    )
    return database_url


def by_id(settings: wb_settings.Settings) -> dict:
    """Settings keyed by id: the ledger keeps connections in id order, not the file's."""
    return {
        a.id: (a.name, a.time_zone, {c.id: c for c in a.connections}) for a in settings.accounts
    }


def listed(*args: str) -> list[dict]:
    result = run("list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def ids(rows: list[dict]) -> set[str]:
    return {r["id"] for r in rows}


# writeback list --------------------------------------------------------------------------------


def test_list_filters_narrow_the_rows(seeded):
    db = ("--database", seeded)
    assert ids(listed(*db)) == {"sf-pending", "nf-done", "nf-failed", "tr-pending"}
    assert ids(listed(*db, "--status", "failed")) == {"nf-failed"}
    assert ids(listed(*db, "--status", "pending")) == {"sf-pending", "tr-pending"}
    assert ids(listed(*db, "--connection", "acme-nf")) == {"nf-done", "nf-failed"}
    assert ids(listed(*db, "--account", "globex")) == {"tr-pending"}
    assert ids(listed(*db, "--mailing", "m2")) == {"nf-done"}
    assert ids(listed(*db, "--account", "acme", "--status", "pending")) == {"sf-pending"}
    # --since is on updated_at: only the row touched after the flush at LATER
    assert ids(listed(*db, "--since", (LATER + timedelta(minutes=1)).isoformat())) == {"tr-pending"}
    assert ids(listed(*db, "--since", "2026-03-01T14:01:00")) == {"tr-pending"}  # no offset: UTC
    assert len(listed(*db, "--limit", "2")) == 2


def test_list_json_is_one_object_per_row_with_offset_datetimes_and_payload(seeded):
    (row,) = listed("--database", seeded, "--status", "failed")
    assert row["status"] == "failed" and row["error_code"] == "INVALID_ID" and row["attempts"] == 1
    assert row["connection_id"] == "acme-nf" and row["recipient_key"] == "lee@example.org"
    assert row["payload"] == {"action": "SENT", "mailing_name": "Spring newsletter nf-failed"}
    assert datetime.fromisoformat(row["updated_at"]) == LATER
    assert row["occurred_at"].endswith("+00:00")


def test_list_table_shows_each_row_with_a_one_line_truncated_error(seeded):
    result = run("list", "--database", seeded, "--connection", "acme-nf")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in ("id", "account", "connection", "class", "event type", "recipient_key",
                    "occurred_at", "status", "attempts", "error code", "error message", "updated_at"):  # fmt: skip
        assert heading in out
    failed_line = next(line for line in out.splitlines() if "nf-failed" in line)
    for value in ("acme", "acme-nf", "lee@example.org", "failed", "INVALID_ID", "2026-03-01T14:00:00+00:00"):
        assert value in failed_line
    assert "No customer with key [CK-1] in netFORUM" in failed_line  # brackets are text, not markup
    assert "nf-done" in out and "sf-pending" not in out


def test_list_says_when_nothing_matches(seeded):
    result = run("list", "--database", seeded, "--connection", "nobody")
    assert result.exit_code == 0
    assert result.stdout == "" and "no writebacks match" in result.stderr
    assert listed("--database", seeded, "--connection", "nobody") == []


def test_list_reads_the_database_from_the_environment(seeded, monkeypatch):
    monkeypatch.setenv("WRITEBACK_DATABASE_URL", seeded)
    assert ids(listed("--status", "completed")) == {"nf-done"}


@pytest.mark.parametrize(
    ("args", "option", "reason"),
    [
        (("--status", "stuck"), "--status", "'stuck' is not one of 'pending', 'in_flight', 'completed', 'failed'"),
        (("--since", "yesterday"), "--since", "'yesterday' is not an ISO-8601 datetime"),
        (("--limit", "0"), "--limit", "should be greater than or equal to 1"),
    ],
)  # fmt: skip
def test_list_rejects_bad_options_naming_the_option_and_the_reason(tmp_path, args, option, reason):
    result = run("list", "--database", f"sqlite:///{tmp_path / 'l.db'}", *args)
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in flat(result.stderr)
    assert reason in flat(result.stderr)


# writeback show --------------------------------------------------------------------------------


def test_show_prints_every_field_and_the_payload(seeded):
    result = run("show", "nf-failed", "--database", seeded)
    assert result.exit_code == 0, result.output
    fields = dict(
        line.split(None, 1) for line in result.stdout.split("payload:")[0].splitlines() if line[:1].strip()
    )
    assert fields["status"] == "failed" and fields["error_code"] == "INVALID_ID"
    assert fields["attempts"] == "1" and fields["mailing_id"] == "m1"
    assert fields["first_failed_at"] == "2026-03-01T14:00:00+00:00"
    assert fields["completed_at"] == "-"
    assert "No customer with key [CK-1]\n" in result.stdout  # the whole message, on its own lines
    payload = json.loads(result.stdout.split("payload:")[1])
    assert payload == {"action": "SENT", "mailing_name": "Spring newsletter nf-failed"}


def test_show_json_and_unknown_ids(seeded):
    result = run("show", "nf-done", "--json", "--database", seeded)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert (row["id"], row["status"]) == ("nf-done", "completed")
    assert datetime.fromisoformat(row["completed_at"]) == LATER

    missing = run("show", "no-such-id", "--database", seeded)
    assert missing.exit_code == 1
    assert "no writeback with id no-such-id" in missing.stderr


# writeback settings ----------------------------------------------------------------------------


def test_settings_validate_summarises_accounts_connections_and_schedules(settings_file):
    result = run("settings", "validate", settings_file)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "2 accounts, 3 connections (netforum 1, salesforce 1, tracking 1)" in out
    assert "connection acme-sf: salesforce, enabled" in out
    assert "activity schedule: manual" in out  # 002: Salesforce activity defaults to Manual
    assert "subscriber schedule: every 10 minutes" in out  # 000
    assert "activity schedule: weekly on friday at 17:30 (America/Chicago)" in out
    assert "mailing activity: click, opened, sent" in out
    assert "daily at 04:00 (Europe/London)" in out  # 001: tracking once daily, account zone


def test_settings_validate_rejects_turning_off_unsubscribe_writebacks(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SETTINGS_TOML.replace('kind = "salesforce"', 'kind = "salesforce"\nwritebacks = { unsubscribe = false }'))
    result = run("settings", "validate", bad)
    assert result.exit_code == 1
    assert "accounts[acme].connections[acme-sf].writebacks.unsubscribe" in result.stderr
    assert "cannot be turned off" in result.stderr

    missing = run("settings", "validate", tmp_path / "absent.toml")
    assert missing.exit_code == 1 and "cannot read settings file" in missing.stderr


def test_settings_apply_then_show_round_trips(settings_file, database_url):
    applied = run("settings", "apply", settings_file, "--database", database_url)
    assert applied.exit_code == 0, applied.output
    assert f"stored {settings_file}" in applied.stdout
    assert "2 accounts, 3 connections" in applied.stdout

    shown = run("settings", "show", "--json", "--database", database_url)
    assert shown.exit_code == 0, shown.output
    assert by_id(wb_settings.parse_settings(json.loads(shown.stdout))) == by_id(
        wb_settings.load_settings(settings_file)
    )

    table = run("settings", "show", "--database", database_url)
    assert table.exit_code == 0, table.output
    nf_line = next(line for line in table.stdout.splitlines() if "acme-nf" in line)
    for value in ("acme", "America/Chicago", "netforum", "yes", "click, opened, sent",
                  "every 10 minutes", "weekly on friday at 17:30"):  # fmt: skip
        assert value in nf_line


def test_settings_apply_reports_connections_it_removes_and_refuses_invalid_files(settings_file, database_url, tmp_path):
    run("settings", "apply", settings_file, "--database", database_url)
    ledger = Ledger.connect(database_url)
    ledger.insert([wb("w1", connection="globex-tr", account="globex"), wb("w2", connection="globex-tr", account="globex")], now=T0)
    ledger.close()
    smaller = tmp_path / "smaller.toml"
    smaller.write_text(SETTINGS_TOML.split("[[accounts]]\nid = \"globex\"")[0])
    result = run("settings", "apply", smaller, "--database", database_url)
    assert result.exit_code == 0, result.output
    assert "removed connections: globex-tr" in result.stdout
    assert "globex-tr: 2 unwritten writebacks stay pending until it is configured again" in result.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text('[[accounts]]\nid = "acme"\ntime_zone = "Mars/Base"\n')
    refused = run("settings", "apply", bad, "--database", database_url)
    assert refused.exit_code == 1 and "Mars/Base" in refused.stderr
    shown = json.loads(run("settings", "show", "--json", "--database", database_url).stdout)
    assert [a["id"] for a in shown["accounts"]] == ["acme"]  # the invalid file stored nothing


# writeback send-activity -----------------------------------------------------------------------


def test_send_activity_makes_a_mailings_manual_window_rows_due(ledger, database_url, settings_file):
    run("settings", "apply", settings_file, "--database", database_url)
    ledger.insert(
        [
            wb("m1-pat", mailing="m1"),
            wb("m2-pat", mailing="m2", recipient="sam@example.org"),
            wb("sub-pat", wb_class=SUB, recipient="kim@example.org"),  # not activity: stays
        ],
        now=T0,
    )
    assert ledger.connections_with_due_rows(datetime.now(UTC)) == []  # manual: nothing is due

    result = run("send-activity", "--connection", "acme-sf", "--mailing", "m1", "--database", database_url)
    assert result.exit_code == 0, result.output
    assert "1 activity writebacks of mailing m1 released for the next flush of acme-sf" in result.stdout

    now = datetime.now(UTC)
    assert ledger.connections_with_due_rows(now) == ["acme-sf"]
    assert [w.id for w in ledger.claim_due("acme-sf", "flusher-1", now, limit=10)] == ["m1-pat"]

    everything = run("send-activity", "--connection", "acme-sf", "--database", database_url)
    assert "1 activity writebacks released" in everything.stdout  # m2; the subscriber row waits
    subscriber = run("send-activity", "--connection", "acme-sf", "--class", "subscriber", "--database", database_url)
    assert "1 subscriber writebacks released" in subscriber.stdout


def test_send_activity_refuses_a_connection_not_in_the_stored_settings(ledger, database_url, settings_file):
    run("settings", "apply", settings_file, "--database", database_url)
    ledger.insert([wb("orphan", connection="old-sf")], now=T0)
    result = run("send-activity", "--connection", "old-sf", "--database", database_url)
    assert result.exit_code == 1
    assert "unknown connection old-sf" in result.stderr
    assert ledger.get("orphan")["window_closes_at"] is None


# writeback retry -------------------------------------------------------------------------------


def test_retry_turns_a_failed_row_pending_and_due_now(seeded, ledger):
    result = run("retry", "nf-failed", "nf-done", "ghost", "--database", seeded)
    assert result.exit_code == 0, result.output
    assert "1 of 3 requeued" in result.stdout
    assert "nf-done: not failed (completed)" in result.stderr
    assert "ghost: unknown" in result.stderr

    row = ledger.get("nf-failed")
    assert row["status"] == "pending" and row["attempts"] == 1  # attempts are kept
    assert ledger.get("nf-done")["status"] == "completed"
    now = datetime.now(UTC)
    assert "acme-nf" in ledger.connections_with_due_rows(now)
    assert [w.id for w in ledger.claim_due("acme-nf", "flusher-2", now, limit=10)] == ["nf-failed"]


def test_retry_exits_1_when_nothing_was_requeued(seeded):
    result = run("retry", "sf-pending", "ghost", "--database", seeded)
    assert result.exit_code == 1
    assert "0 of 2 requeued" in result.stdout
    assert "sf-pending: not failed (pending)" in result.stderr


def test_schemas_pairs_lists_every_pair_a_tracking_connection_writes_seed_001():
    result = runner.invoke(app, ["schemas", "pairs"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == len(set(lines)) > 30
    assert "Sent\tDelivered" in lines and "Event Signup\tEvent Signup" in lines
    assert "Blocked\tBlocked" not in lines  # seed 000's own pair, only with --extensions
    assert "Blocked\tBlocked" in runner.invoke(app, ["schemas", "pairs", "--extensions"]).output.splitlines()


# writeback settings exclude-mailing / include-mailing ------------------------------------------


def test_exclude_mailing_updates_the_stored_settings_and_says_what_it_does_not_reach(ledger, database_url, settings_file):
    run("settings", "apply", settings_file, "--database", database_url)
    ledger.insert([wb("queued", connection="acme-nf", mailing="m-123")], now=T0)

    result = run("settings", "exclude-mailing", "--connection", "acme-nf", "--mailing", "m-123", "--database", database_url)
    assert result.exit_code == 0, result.output
    assert "mailing m-123 excluded from acme-nf's writebacks" in result.stdout
    assert "applies to activity ingested from now on" in result.stdout
    assert "1 writebacks of the mailing already queued for acme-nf are written as before" in result.stdout
    stored = wb_settings.stored(ledger)
    _, nf = stored.connection("acme-nf")
    assert nf.writebacks.excluded_mailings == {"m-123"}
    # nothing else changed: the other connections and this one's checkboxes and schedules
    before = wb_settings.load_settings(settings_file)
    assert by_id(stored).keys() == by_id(before).keys()
    assert nf.model_copy(update={"writebacks": before.connection("acme-nf")[1].writebacks}) == before.connection("acme-nf")[1]
    assert stored.connection("acme-sf")[1] == before.connection("acme-sf")[1]

    again = run("settings", "exclude-mailing", "--connection", "acme-nf", "--mailing", "m-123", "--database", database_url)
    assert again.exit_code == 0 and "mailing m-123 already excluded from acme-nf's writebacks" in again.stdout
    run("settings", "exclude-mailing", "--connection", "acme-nf", "--mailing", "m-456", "--database", database_url)
    table = run("settings", "show", "--database", database_url)
    assert "not for mailings m-123, m-456" in flat(table.stdout)

    included = run("settings", "include-mailing", "--connection", "acme-nf", "--mailing", "m-123", "--database", database_url)
    assert included.exit_code == 0, included.output
    assert "mailing m-123 included in acme-nf's writebacks" in included.stdout
    assert wb_settings.stored(ledger).connection("acme-nf")[1].writebacks.excluded_mailings == {"m-456"}


def test_exclude_mailing_refuses_unknown_connections_and_kinds_without_optional_activity(database_url, settings_file):
    run("settings", "apply", settings_file, "--database", database_url)
    unknown = run("settings", "exclude-mailing", "--connection", "old-nf", "--mailing", "m-1", "--database", database_url)
    assert unknown.exit_code == 1 and "unknown connection old-nf" in unknown.stderr

    tracking = run("settings", "exclude-mailing", "--connection", "globex-tr", "--mailing", "m-1", "--database", database_url)
    assert tracking.exit_code == 1
    assert "accounts[globex].connections[globex-tr].writebacks.excluded_mailings" in tracking.stderr
    assert "nothing to exclude per mailing" in tracking.stderr

    too_long = run("settings", "exclude-mailing", "--connection", "acme-nf", "--mailing", "m" * 65, "--database", database_url)
    assert too_long.exit_code == 1 and "writebacks.excluded_mailings" in too_long.stderr
    shown = json.loads(run("settings", "show", "--json", "--database", database_url).stdout)
    assert all(
        c["writebacks"]["excluded_mailings"] == [] for a in shown["accounts"] for c in a["connections"]
    )  # a refused change stores nothing


def test_settings_files_carry_excluded_mailings_and_validate_names_the_field(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(SETTINGS_TOML.replace(
        'writebacks = { mailing_activity = ["sent", "opened", "click"] }',
        'writebacks = { mailing_activity = ["sent", "opened", "click"], excluded_mailings = ["m-123"] }',
    ))
    result = run("settings", "validate", good)
    assert result.exit_code == 0, result.output
    assert "mailing activity: click, opened, sent (not for mailings m-123)" in result.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(SETTINGS_TOML.replace('kind = "tracking"', 'kind = "tracking"\nwritebacks = { excluded_mailings = ["m-1"] }'))
    refused = run("settings", "validate", bad)
    assert refused.exit_code == 1
    assert "accounts[globex].connections[globex-tr].writebacks.excluded_mailings" in refused.stderr
