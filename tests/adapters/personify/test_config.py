"""Personify `crm` settings: errors name the field; the opt-in modes need Manage Unsubscribe."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import PS_CRM
from writeback.errors import ConfigError
from writeback.settings import parse_settings


def settings(**crm: Any) -> dict[str, Any]:
    conn = {"id": "ps", "kind": "personify", "crm": {**PS_CRM, **crm}}
    return {"accounts": [{"id": "acct", "time_zone": "America/Chicago", "connections": [conn]}]}


def error_for(**crm: Any) -> str:
    with pytest.raises((ConfigError, ValueError)) as info:
        parse_settings(settings(**crm))
    return str(info.value)


def test_defaults_activity_mode_tracking_on_dbo():
    config = parse_settings(settings()).accounts[0].connections[0].config
    assert (config.personify_mode, config.tracking_enabled, config.db_schema) == ("activity", True, "dbo")


@pytest.mark.parametrize("mode", ["opt_in", "both"])
def test_opt_in_modes_need_manage_unsubscribe(mode):
    message = error_for(personify_mode=mode, manage_unsubscribe=None)
    assert "crm" in message and "manage_unsubscribe: required when personify_mode is " + mode in message
    assert "manage_unsubscribe" in error_for(personify_mode=mode, manage_unsubscribe={})


def test_activity_mode_needs_no_mapping():
    config = parse_settings(settings(personify_mode="activity", manage_unsubscribe=None)).accounts[0].connections[0].config
    assert config.manage_unsubscribe is None


@pytest.mark.parametrize(
    ("crm", "field"),
    [({"personify_mode": "flag"}, "crm.personify_mode"),
     ({"manage_unsubscribe": {"group": {"g-1": "A_CODE_LONGER_THAN_24_CHARS"}}}, "crm.manage_unsubscribe.group"),
     ({"manage_unsubscribe": {"groups": {"g-1": "X"}}}, "crm.manage_unsubscribe.groups"),
     ({"database_url": "not a url"}, "crm.database_url"),
     ({"password": "hunter2"}, "crm.password")],
)  # fmt: skip
def test_bad_settings_name_the_field(crm, field):
    assert field in error_for(**crm)


def test_a_url_with_credentials_is_refused():
    assert "crm.database_url" in error_for(database_url="mssql+pyodbc://sa:pw@sql01/PERSONIFY")


def test_the_whole_url_may_come_by_reference():
    config = parse_settings(settings(database_url={"env": "PS_URL"}, username=None, password=None)).accounts[0].connections[0].config
    assert config.database_url.env == "PS_URL"


def test_tracking_disabled_routes_nothing_and_crm_sync_is_not_written_back():
    from tests.ingest.test_routing import subscriber
    from writeback.adapters.personify import KIND
    from writeback.contract.events import Source, SubscriberAction

    on = parse_settings(settings()).accounts[0].connections[0]
    off = parse_settings(settings(tracking_enabled=False)).accounts[0].connections[0]
    event = subscriber(SubscriberAction.UNSUBSCRIBE, source=Source.MAILING_LINK)
    assert KIND.route(event, on).taken and KIND.route(event, off).reason == "tracking_disabled"
    synced = subscriber(SubscriberAction.UNSUBSCRIBE, source=Source.CRM_SYNC)
    assert KIND.route(synced, on).reason == "originated_in_crm"
    assert KIND.open is not None
