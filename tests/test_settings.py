"""Writeback Settings: seed defaults, rules that cannot be bypassed, errors that name the field."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from typer.testing import CliRunner

from tests.builders import CM_CRM, NF_CRM, PS_CRM, SF_CRM
from writeback import schedules
from writeback import settings as wb_settings
from writeback.adapters.base import Kind, drop
from writeback.adapters.registry import KINDS
from writeback.cli import app
from writeback.errors import ConfigError
from writeback.ledger import Ledger
from writeback.ledger.rows import MailingActivity, WritebackClass
from writeback.settings import load_settings, parse_settings

SUB, ACT = WritebackClass.SUBSCRIBER, WritebackClass.ACTIVITY


# what the kinds that need `crm` settings get when a test does not care
CRM = {"salesforce": SF_CRM, "tracking": SF_CRM, "netforum": NF_CRM, "personify": PS_CRM, "community": CM_CRM}
NF_TOML = 'crm = { xweb_url = "https://members.acme.org/xweb/secure/netFORUMXML.asmx", username = "informz", password = { env = "NF" } }\n'


class AnyCrm(BaseModel):
    """The `crm` settings of a kind that takes anything: the checks every kind shares (inline
    credentials) are specified without a CRM's own fields in the way."""

    model_config = ConfigDict(frozen=True, extra="allow")


@pytest.fixture(autouse=True)
def generic_kind(monkeypatch):
    monkeypatch.setitem(
        KINDS,
        "generic",
        Kind(name="generic", route=lambda _e, _c: drop("not_for_kind"), schedules=lambda _tz: {}, config=AnyCrm),
    )


def one_connection(**connection) -> dict:
    connection.setdefault("id", "conn")
    connection.setdefault("crm", CRM.get(connection.get("kind"), {}))
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
                        {"id": kind, "kind": kind, "crm": CRM.get(kind, {})}
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
        ({"kind": "netforum", "crm": {"suppress_email_opt_out": True}},
         "connections[conn].crm.suppress_email_opt_out", "Extra inputs are not permitted"),
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
            kind="generic",
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
        '[[accounts.connections]]\nid = "acme-nf"\nkind = "netforum"\n' + NF_TOML +
        '[accounts.connections.schedules.activity]\nkind = "daily"\nat = 06:15:00\n'
    )
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text(
        "accounts:\n- id: acme\n  time_zone: Europe/London\n  connections:\n"
        "  - {id: acme-nf, kind: netforum, schedules: {activity: {kind: daily, at: '06:15'}},"
        " crm: {xweb_url: 'https://members.acme.org/xweb/secure/netFORUMXML.asmx', username: informz, password: {env: NF}}}\n"
    )
    assert load_settings(toml) == load_settings(yaml_file)
    bad = tmp_path / "bad.toml"
    bad.write_text("accounts = [")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_settings(bad)


def test_applied_settings_are_shared_through_the_database(database_url):
    ledger = Ledger.connect(database_url)
    settings = parse_settings(
        one_connection(kind="salesforce", crm={**SF_CRM, "suppress_email_opt_out": True})
    )
    wb_settings.apply(ledger, settings, datetime(2026, 1, 1, tzinfo=UTC))
    assert wb_settings.stored(ledger) == settings
    reloaded = wb_settings.stored(ledger).connection("conn")
    assert reloaded is not None and reloaded[1].kind == "salesforce"
    ledger.close()


def test_instances_starting_together_all_store_their_settings(database_url):
    """Every instance stores the settings file it was given as it starts; several starting at
    once on one database must not refuse each other's rows (a duplicate key would stop one)."""
    settings = parse_settings(one_connection(kind="salesforce", crm=SF_CRM))
    ledgers = [Ledger.connect(database_url) for _ in range(4)]
    start = threading.Barrier(len(ledgers))
    failures: list[BaseException] = []

    def start_up(ledger: Ledger) -> None:
        for attempt in range(10):
            start.wait()
            try:
                wb_settings.apply(ledger, settings, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=attempt))
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(exc)

    threads = [threading.Thread(target=start_up, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, [type(f).__name__ for f in failures]
    assert all(wb_settings.stored(ledger) == settings for ledger in ledgers)
    for ledger in ledgers:
        ledger.close()


# -- inline credentials anywhere under crm (issue 12, item 2) ------------------------------------

SF = "accounts[acme].connections[acme-sf]"


def settings_file(tmp_path, fmt: str, connection: str, kind: str = "salesforce") -> Path:
    """One account with one connection, `connection` being that connection's extra lines in the
    file's own syntax (TOML key = value lines, or YAML mapping lines indented under the item)."""
    path = tmp_path / f"settings.{fmt}"
    if fmt == "toml":
        head = '[[accounts]]\nid = "acme"\ntime_zone = "America/Chicago"\n[[accounts.connections]]\n'
        path.write_text(head + f'id = "acme-sf"\nkind = "{kind}"\n' + connection)
    else:
        head = "accounts:\n- id: acme\n  time_zone: America/Chicago\n  connections:\n"
        path.write_text(head + f"  - id: acme-sf\n    kind: {kind}\n" + connection)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


CREDENTIAL_SHAPES = {
    "nested password": (
        'crm = { login_url = "https://login.example.com", auth = { username = "api", password = "s3cr3t-nested" } }\n',
        "    crm:\n      login_url: https://login.example.com\n"
        "      auth: {username: api, password: s3cr3t-nested}\n",
        ["crm.auth.password"],
    ),
    "passwd": ('crm = { passwd = "s3cr3t-passwd" }\n', "    crm: {passwd: s3cr3t-passwd}\n", ["crm.passwd"]),
    "url with user:password@": (
        'crm = { instance_url = "https://api-user:s3cr3t-url@acme.my.salesforce.com" }\n',
        "    crm:\n      instance_url: https://api-user:s3cr3t-url@acme.my.salesforce.com\n",
        ["crm.instance_url"],
    ),
    "tokens in a list of dicts": (
        'crm = { endpoints = [ { id = "primary", url = "https://a.example.com", apiKey = "s3cr3t-list" },'
        ' { url = "https://b.example.com", auth_token = "s3cr3t-list" } ] }\n',
        "    crm:\n      endpoints:\n"
        "      - {id: primary, url: 'https://a.example.com', apiKey: s3cr3t-list}\n"
        "      - url: https://b.example.com\n        auth_token: s3cr3t-list\n",
        ["crm.endpoints[primary].apiKey", "crm.endpoints[1].auth_token"],
    ),
}


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
@pytest.mark.parametrize("shape", CREDENTIAL_SHAPES)
def test_inline_credentials_are_refused_at_any_depth_by_their_full_path(tmp_path, fmt, shape):
    toml, yaml_lines, paths = CREDENTIAL_SHAPES[shape]
    message = load_error(settings_file(tmp_path, fmt, toml if fmt == "toml" else yaml_lines))
    for path in paths:
        assert f"{SF}.{path}: " in message
    assert len(message.splitlines()) == 1 + len(paths)  # one line per offending field, no others
    assert "s3cr3t" not in message


def test_the_raw_validation_error_does_not_carry_the_credential_either():
    data = one_connection(kind="salesforce", crm={"auth": {"password": "s3cr3t-raw"}, "url": "https://u:s3cr3t-raw@h"})
    with pytest.raises(ValidationError) as info:
        wb_settings.Settings.model_validate(data)
    assert "s3cr3t" not in str(info.value) and "s3cr3t" not in repr(info.value.errors())


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_references_at_depth_plain_urls_and_non_secret_names_are_accepted(tmp_path, fmt, monkeypatch):
    toml = (
        'crm = { login_url = "https://login.example.com", instance_url = "https://acme.my.salesforce.com/x?a=b@c",'
        ' username = "api@acme.org", client_secret = { env = "SF_SECRET" }, key_field = "Email",'
        ' token_url = "https://login.example.com/token", monkey = "business", use_token = true,'
        ' auth = { password = { env = "SF_PASSWORD" } },'
        ' endpoints = [ { id = "primary", url = "https://a.example.com", api_key = { file = "/run/key" } } ] }\n'
    )
    yaml_lines = (
        "    crm:\n"
        "      login_url: https://login.example.com\n"
        "      instance_url: https://acme.my.salesforce.com/x?a=b@c\n"
        "      username: api@acme.org\n"
        "      client_secret: {env: SF_SECRET}\n"
        "      key_field: Email\n"
        "      token_url: https://login.example.com/token\n"
        "      monkey: business\n"
        "      use_token: true\n"
        "      auth: {password: {env: SF_PASSWORD}}\n"
        "      endpoints:\n"
        "      - {id: primary, url: 'https://a.example.com', api_key: {file: /run/key}}\n"
    )
    connection = load_settings(settings_file(tmp_path, fmt, toml if fmt == "toml" else yaml_lines, "generic")).accounts[0].connections[0]
    assert connection.crm["auth"] == {"password": {"env": "SF_PASSWORD"}}
    monkeypatch.setenv("SF_SECRET", "from-env")
    assert connection.secret("client_secret").get_secret_value() == "from-env"  # top-level refs resolve


@pytest.mark.parametrize(
    ("name", "secret"),
    [("password", True), ("passwd", True), ("pwd", True), ("db_pass", True), ("client_secret", True),
     ("clientSecret", True), ("api_key", True), ("apikey", True), ("APIKey", True), ("private-key", True),
     ("auth.token", True), ("authToken", True), ("credentials", True), ("password2", True),
     ("secret_value", True), ("sort_key", True),
     ("username", False), ("login_url", False), ("instance_url", False), ("token_url", False),
     ("key_field", False), ("monkey", False), ("keyword", False), ("client_id", False),
     ("secret_name", False), ("passenger", False)],
)  # fmt: skip
def test_which_names_are_credentials(name, secret):
    assert wb_settings.names_a_secret(name) is secret


def test_a_broken_reference_under_a_secret_name_is_refused_without_echoing():
    message = error_for(one_connection(kind="salesforce", crm={"auth": {"token": {"env": "A", "file": "s3cr3t"}}}))
    assert "connections[conn].crm.auth.token: " in message and "s3cr3t" not in message


@pytest.mark.parametrize(
    "url",
    ["https://user@h.example.com", "https://:s3cr3t@h.example.com", "jdbc:postgresql://u:s3cr3t@db/x",
     "https://u:s3cr3t@[bad"],
)  # fmt: skip
def test_any_url_with_user_info_is_refused(url):
    message = error_for(one_connection(kind="salesforce", crm={"hosts": ["https://ok.example.com", url]}))
    assert "connections[conn].crm.hosts[1]: a URL with user info" in message and "s3cr3t" not in message


# -- subscriber-status schedules (issue 12, item 5) ---------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_manual_subscriber_schedule_is_refused_for_every_kind(kind):
    message = error_for(one_connection(kind=kind, schedules={"subscriber": {"kind": "manual"}}))
    assert "accounts[acct].connections[conn].schedules.subscriber: subscriber status cannot be manual" in message


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_a_manual_subscriber_schedule_is_refused_in_files(tmp_path, fmt):
    line = 'schedules = { subscriber = { kind = "manual" } }\n' if fmt == "toml" else "    schedules: {subscriber: {kind: manual}}\n"
    message = load_error(settings_file(tmp_path, fmt, line))
    assert f"{SF}.schedules.subscriber: subscriber status cannot be manual" in message


@pytest.mark.parametrize(
    ("kind", "schedule", "refused"),
    [("netforum", {"kind": "interval", "minutes": 15}, "every 15 minutes"),
     ("netforum", {"kind": "hourly"}, "every 1 hour"),
     ("netforum", {"kind": "daily", "at": "04:00"}, "every 1 day"),
     ("netforum", {"kind": "interval", "minutes": 10}, None),
     ("netforum", {"kind": "interval", "minutes": 5}, None),
     ("tracking", {"kind": "weekly", "day": "monday", "at": "04:00"}, "every 7 days"),
     ("personify", {"kind": "every_n_days", "days": 2, "at": "04:00", "anchor": "2026-01-01"}, "every 2 days"),
     ("personify", {"kind": "daily", "at": "23:00"}, None),
     ("tracking", {"kind": "hourly"}, None),
     ("salesforce", {"kind": "weekly", "day": "monday", "at": "04:00"}, None),  # 002 names no cadence
     ("community", {"kind": "every_n_days", "days": 30, "at": "04:00", "anchor": "2026-01-01"}, None)],
)  # fmt: skip
def test_subscriber_schedules_slower_than_a_seeds_cadence_are_refused(kind, schedule, refused):
    data = one_connection(kind=kind, schedules={"subscriber": schedule})
    if refused is None:
        assert parse_settings(data).accounts[0].connections[0].schedule(SUB).kind == schedule["kind"]
    else:
        message = error_for(data)
        assert "connections[conn].schedules.subscriber: " in message and f"this schedule fires {refused}" in message


def test_a_netforum_hourly_file_names_the_seed_cadence(tmp_path):
    path = tmp_path / "nf.toml"
    path.write_text(
        '[[accounts]]\nid = "acme"\ntime_zone = "America/Chicago"\n[[accounts.connections]]\n'
        'id = "acme-nf"\nkind = "netforum"\nschedules.subscriber = { kind = "hourly", minute = 5 }\n' + NF_TOML
    )
    message = load_error(path)
    assert (
        "accounts[acme].connections[acme-nf].schedules.subscriber: netforum subscriber status goes out "
        "at least every 10 minutes (seed 000); this schedule fires every 1 hour"
    ) in message


def test_cadence_is_the_nominal_gap_between_fires():
    tz = "America/New_York"
    assert schedules.cadence(TypeAdapter(schedules.Schedule).validate_python({"kind": "manual"})) is None
    assert schedules.cadence(schedules.SUBSCRIBER_STATUS_DEFAULT) == timedelta(minutes=10)
    assert schedules.cadence(TypeAdapter(schedules.Schedule).validate_python({"kind": "hourly", "tz": tz})) == timedelta(hours=1)
    assert schedules.cadence(schedules.daily_default(tz)) == timedelta(days=1)  # also on 25-hour days
    weekly = {"kind": "weekly", "day": "friday", "at": "09:00", "tz": tz}
    assert schedules.cadence(TypeAdapter(schedules.Schedule).validate_python(weekly)) == timedelta(days=7)


# -- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field"),
    [('crm = { auth = { password = "s3cr3t-cli" } }\n', f"{SF}.crm.auth.password: "),
     ('schedules.subscriber = { kind = "manual" }\n', f"{SF}.schedules.subscriber: ")],
)  # fmt: skip
def test_settings_validate_exits_non_zero_and_names_the_field(tmp_path, line, field):
    result = CliRunner().invoke(app, ["settings", "validate", str(settings_file(tmp_path, "toml", line))])
    assert result.exit_code == 1
    assert field in result.stderr
    assert "s3cr3t" not in result.output + result.stderr


def test_a_tracking_connection_takes_netforum_as_its_integrated_product():
    """001's integrated product may be netFORUM: its `crm` settings beside `product`."""
    settings = parse_settings(one_connection(kind="tracking", crm={**NF_CRM, "product": "netforum"}))
    config = settings.accounts[0].connections[0].config
    assert config.product == "netforum"
    assert config.product_config.username == NF_CRM["username"]
    message = error_for(one_connection(kind="tracking", crm={"product": "netforum", "username": "informz"}))
    assert "connections[conn].crm" in message and "password" in message
    unknown = error_for(one_connection(kind="tracking", crm={**NF_CRM, "product": "oracle"}))
    assert "'oracle' is not an integrated product; one of netforum, salesforce" in unknown
