"""The netFORUM connection's `crm` settings: what is accepted, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from writeback.adapters.netforum import Config
from writeback.errors import ConfigError

ENDPOINT = "https://members.example.org/xweb/secure/netFORUMXML.asmx"
VALID: dict[str, Any] = {"xweb_url": ENDPOINT, "username": "informz-xweb", "password": {"env": "NF_PASSWORD"}}


def problems(**changes: Any) -> list[tuple[tuple[Any, ...], str]]:
    data = {k: v for k, v in {**VALID, **changes}.items() if v is not None}
    with pytest.raises(ValidationError) as caught:
        Config.model_validate(data)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


def test_defaults_and_the_wsdl_location() -> None:
    config = Config.model_validate(VALID)
    assert config.wsdl == ENDPOINT + "?WSDL"
    assert (config.timeout_s, config.session_max_age_s, config.fault_budget_per_day) == (30.0, 900, 20)
    assert config.time_zone is None
    elsewhere = Config.model_validate({**VALID, "wsdl_url": "https://cdn.example.org/xweb.wsdl"})
    assert elsewhere.wsdl == "https://cdn.example.org/xweb.wsdl" and elsewhere.xweb_url == ENDPOINT


def test_an_endpoint_is_required() -> None:
    assert problems(xweb_url=None) == [(("xweb_url",), "Value error, give xweb_url (the xWeb endpoint) or wsdl_url")]


@pytest.mark.parametrize("field", ["xweb_url", "wsdl_url"])
def test_urls_are_http_without_user_info(field: str) -> None:
    assert problems(**{field: "ftp://members.example.org/x"}) == [
        ((field,), f"Value error, {field} must be an http(s) URL")
    ]
    [(where, message)] = problems(**{field: "https://informz:hunter2@members.example.org/x"})
    assert where == (field,) and "user info" in message


def test_the_password_is_a_reference_never_inline() -> None:
    [(where, message)] = problems(password="hunter2")
    assert where == ("password",) and "never the password" in message
    [(where, message)] = problems(password={"env": "A", "file": "/b"})
    assert where == ("password",) and "exactly one of env or file" in message


def test_the_password_resolves_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NF_PASSWORD", "from-env")
    assert Config.model_validate(VALID).password.resolve().get_secret_value() == "from-env"
    secret = tmp_path / "xweb"
    secret.write_text("from-file\n")
    from_file = Config.model_validate({**VALID, "password": {"file": str(secret)}})
    assert from_file.password.resolve().get_secret_value() == "from-file"
    assert "from-file" not in repr(from_file)
    monkeypatch.delenv("NF_PASSWORD")
    with pytest.raises(ConfigError, match="NF_PASSWORD"):
        Config.model_validate(VALID).password.resolve()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", ""),
        ("timeout_s", 0),
        ("time_zone", "Mars/Olympus_Mons"),
        ("session_max_age_s", -1),
        ("fault_budget_per_day", 100),  # would let this connection reach MethodsFaultLimitPerDay
        ("surprise", 1),
    ],
)
def test_bad_values_name_their_field(field: str, value: Any) -> None:
    assert [where for where, _ in problems(**{field: value})] == [(field,)]
