"""Writeback Settings: seed defaults, rules that cannot be bypassed, errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from writeback import settings as wb_settings
from writeback.errors import ConfigError
from writeback.ledger import Ledger
from writeback.settings import ConnectionKind, MailingActivity, load_settings, parse_settings
from writeback.writebacks import WritebackClass

SUB, ACT = WritebackClass.SUBSCRIBER, WritebackClass.ACTIVITY


def one_connection(**connection) -> dict:
    connection.setdefault("id", "conn")
    return {"accounts": [{"id": "acct", "time_zone": "America/Chicago", "connections": [connection]}]}


def error_for(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    return str(info.value)


def test_seed_defaults_per_connection_kind():
    settings = parse_settings(
        {
            "accounts": [
                {
                    "id": "acct",
                    "time_zone": "America/Chicago",
                    "connections": [
                        {"id": kind, "kind": kind}
                        for kind in ("salesforce", "netforum", "tracking", "personify")
                    ],
                }
            ]
        }
    )
    by_id = {c.id: c for c in settings.accounts[0].connections}
    sf, nf, tr, ps = by_id["salesforce"], by_id["netforum"], by_id["tracking"], by_id["personify"]
    # 002: Sent checked, frequency Manual; subscriber status on the ten-minute queue (000)
    assert sf.mailing_activity() == {MailingActivity.SENT}
    assert sf.schedule(ACT).kind == "manual"
    assert sf.schedule(SUB).model_dump() == {"kind": "interval", "minutes": 10}
    assert nf.schedule(SUB).model_dump() == {"kind": "interval", "minutes": 10}
    # 001 and 004: once daily, in the account's zone
    for conn in (tr, ps):
        for wb_class in (SUB, ACT):
            schedule = conn.schedule(wb_class)
            assert (schedule.kind, schedule.tz) == ("daily", "America/Chicago")


def test_wall_clock_schedules_default_to_the_account_time_zone():
    settings = parse_settings(
        one_connection(kind="netforum", schedules={"activity": {"kind": "weekly", "day": "friday", "at": "17:30"}})
    )
    schedule = settings.accounts[0].connections[0].schedule(ACT)
    assert (schedule.day, schedule.tz) == ("friday", "America/Chicago")


@pytest.mark.parametrize("switch", ["unsubscribe", "resubscribe", "bad_email"])
def test_subscriber_status_writebacks_cannot_be_turned_off(switch):
    message = error_for(one_connection(kind="netforum", writebacks={switch: False}))
    assert f"connections[conn].writebacks.{switch}" in message
    assert "cannot be turned off" in message


@pytest.mark.parametrize(
    ("connection", "where", "reason"),
    [
        ({"kind": "oracle"}, "connections[conn].kind", "'netforum'"),
        ({"kind": "netforum", "schedules": {"activity": {"kind": "daily", "at": "25:00"}}},
         "schedules.activity.at", "not a time of day"),
        ({"kind": "netforum", "schedules": {"activity": {"kind": "daily", "at": "09:00", "tz": "Mars/Base"}}},
         "schedules.activity.tz", "Mars/Base"),
        ({"kind": "netforum", "schedules": {"subscriber": {"kind": "interval", "minutes": 0}}},
         "schedules.subscriber.minutes", "greater than or equal to 1"),
        ({"kind": "salesforce", "crm": {"client_secret": "hunter2"}},
         "connections[conn].crm", "not written inline"),
        ({"kind": "salesforce", "writebacks": {"mailing_activity": ["click"]}},
         "connections[conn]", "click not available for salesforce"),
        ({"kind": "netforum", "suppress_email_opt_out": True},
         "connections[conn]", "only Salesforce"),
    ],
)  # fmt: skip
def test_invalid_settings_name_the_field_and_the_reason(connection, where, reason):
    message = error_for(one_connection(**connection))
    assert where in message and reason in message
    assert "hunter2" not in message


def test_unknown_account_time_zone_is_named():
    message = error_for({"accounts": [{"id": "a", "time_zone": "Mars/Base"}]})
    assert "accounts[a].time_zone" in message and "Mars/Base" in message


def test_credentials_resolve_from_environment_or_file(tmp_path, monkeypatch):
    secret_file = tmp_path / "sf-secret"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("SF_SECRET", "from-env")
    conn = parse_settings(
        one_connection(
            kind="salesforce",
            crm={"client_secret": {"env": "SF_SECRET"}, "api_token": {"file": str(secret_file)}},
        )
    ).accounts[0].connections[0]
    assert conn.secret("client_secret").get_secret_value() == "from-env"
    assert conn.secret("api_token").get_secret_value() == "from-file"
    assert "from-env" not in repr(conn.secret("client_secret"))


def test_settings_files_in_toml_and_yaml(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(
        '[[accounts]]\nid = "acme"\ntime_zone = "Europe/London"\n'
        '[[accounts.connections]]\nid = "acme-nf"\nkind = "netforum"\n'
        '[accounts.connections.schedules.activity]\nkind = "daily"\nat = 06:15:00\n'
    )
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text(
        "accounts:\n- id: acme\n  time_zone: Europe/London\n  connections:\n"
        "  - {id: acme-nf, kind: netforum, schedules: {activity: {kind: daily, at: '06:15'}}}\n"
    )
    assert load_settings(toml) == load_settings(yaml_file)
    bad = tmp_path / "bad.toml"
    bad.write_text("accounts = [")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_settings(bad)


def test_applied_settings_are_shared_through_the_database(database_url):
    ledger = Ledger.connect(database_url)
    settings = parse_settings(
        one_connection(kind="salesforce", suppress_email_opt_out=True, crm={"client_secret": {"env": "X"}})
    )
    wb_settings.apply(ledger, settings, datetime(2026, 1, 1, tzinfo=UTC))
    assert wb_settings.stored(ledger) == settings
    reloaded = wb_settings.stored(ledger).connection("conn")
    assert reloaded is not None and reloaded[1].kind is ConnectionKind.SALESFORCE
    ledger.close()
