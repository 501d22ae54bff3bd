"""A community connection's `crm` settings: the IAMKey and password by reference, an http(s) API
URL, the Active box; errors name the field."""

from __future__ import annotations

import pytest

from tests.builders import CM_CRM
from writeback.adapters.community.config import Config
from writeback.errors import ConfigError
from writeback.settings import parse_settings


def settings(**crm):
    return {
        "accounts": [
            {"id": "acme", "time_zone": "UTC", "connections": [{"id": "cm", "kind": "community", "crm": {**CM_CRM, **crm}}]}
        ]
    }


def test_a_valid_connection_is_active_by_default():
    config = parse_settings(settings()).accounts[0].connections[0].config
    assert isinstance(config, Config)
    assert config.active and config.page_size == 50
    assert config.api_url == "https://api.connectedcommunity.org/api/v2.0"


@pytest.mark.parametrize(
    ("crm", "message"),
    [
        ({"iam_key": "5f0c6a8e-2b1d-4c57-9e3a-7d4b1c2e9f60"}, "crm.iam_key"),
        ({"password": "hunter2"}, "crm.password"),
        ({"api_url": "ftp://community.example.org"}, "api_url must be an http(s) URL"),
        ({"api_url": "https://user:pw@community.example.org/api/v2.0"}, "crm.api_url"),
        ({"page_size": 501}, "crm.page_size"),
        ({"colour": "blue"}, "crm.colour"),
    ],
)
def test_bad_settings_name_the_field_and_never_echo_a_secret(crm, message):
    with pytest.raises(ConfigError) as info:
        parse_settings(settings(**crm))
    assert message in str(info.value)
    assert "hunter2" not in str(info.value) and "5f0c6a8e" not in str(info.value)
