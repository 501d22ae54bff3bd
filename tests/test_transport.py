"""Kafka and registry security settings from WRITEBACK_* variables: what each client is given,
and what is refused (with the variable named and no value echoed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from writeback.config import load_config
from writeback.errors import ConfigError


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith("WRITEBACK_"):
            monkeypatch.delenv(name)

    def set_(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_


def test_plaintext_by_default_adds_nothing_to_the_client_config(env):
    env(WRITEBACK_BOOTSTRAP_SERVERS="b1:9092")
    config = load_config()
    assert config.kafka_config() == {"bootstrap.servers": "b1:9092"}
    assert config.registry_config() == {}


def test_sasl_ssl_with_scram_resolves_the_password_from_a_file_at_each_client(env, tmp_path: Path):
    ca, password = tmp_path / "ca.pem", tmp_path / "password"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    password.write_text("first\n")
    env(
        WRITEBACK_BOOTSTRAP_SERVERS="kafka:9093",
        WRITEBACK_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
        WRITEBACK_KAFKA__SASL_MECHANISM="SCRAM-SHA-512",
        WRITEBACK_KAFKA__SASL_USERNAME="writeback",
        WRITEBACK_KAFKA__SASL_PASSWORD__FILE=str(password),
        WRITEBACK_KAFKA__SSL_CA_FILE=str(ca),
    )
    config = load_config()
    assert config.kafka_config() == {
        "bootstrap.servers": "kafka:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "writeback",
        "sasl.password": "first",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca),
    }
    assert "first" not in repr(config)
    password.write_text("rotated")  # a Secret mounted as a file is updated in place
    assert config.consumer_config()["sasl.password"] == "rotated"


def test_plain_with_the_username_and_password_from_environment_variables(env):
    env(
        WRITEBACK_KAFKA__SECURITY_PROTOCOL="SASL_PLAINTEXT",
        WRITEBACK_KAFKA__SASL_MECHANISM="PLAIN",
        WRITEBACK_KAFKA__SASL_USERNAME__ENV="KAFKA_USER",
        WRITEBACK_KAFKA__SASL_PASSWORD__ENV="KAFKA_PASSWORD",
        KAFKA_USER="svc-writeback",
        KAFKA_PASSWORD="pw",
    )
    conf = load_config().kafka_config()
    assert (conf["sasl.mechanism"], conf["sasl.username"], conf["sasl.password"]) == ("PLAIN", "svc-writeback", "pw")
    assert "ssl.endpoint.identification.algorithm" not in conf


def test_mutual_tls_and_a_registry_with_basic_auth_and_its_own_ca(env, tmp_path: Path):
    files = {n: tmp_path / n for n in ("ca.pem", "client.pem", "client.key", "registry-ca.pem")}
    for f in files.values():
        f.write_text("pem")
    env(
        WRITEBACK_KAFKA__SECURITY_PROTOCOL="SSL",
        WRITEBACK_KAFKA__SSL_CA_FILE=str(files["ca.pem"]),
        WRITEBACK_KAFKA__SSL_CERT_FILE=str(files["client.pem"]),
        WRITEBACK_KAFKA__SSL_KEY_FILE=str(files["client.key"]),
        WRITEBACK_KAFKA__SSL_CHECK_HOSTNAME="false",
        WRITEBACK_SCHEMA_REGISTRY_URL="https://registry.example.org",
        WRITEBACK_REGISTRY__USERNAME="api-key",
        WRITEBACK_REGISTRY__PASSWORD__ENV="REGISTRY_SECRET",
        WRITEBACK_REGISTRY__SSL_CA_FILE=str(files["registry-ca.pem"]),
        REGISTRY_SECRET="s3",
    )
    config = load_config()
    kafka = config.kafka_config()
    assert kafka["ssl.certificate.location"] == str(files["client.pem"])
    assert kafka["ssl.key.location"] == str(files["client.key"])
    assert kafka["ssl.endpoint.identification.algorithm"] == "none"
    assert config.registry_config() == {
        "basic.auth.user.info": "api-key:s3",
        "ssl.ca.location": str(files["registry-ca.pem"]),
    }


@pytest.mark.parametrize(
    ("variables", "named", "reason"),
    [
        ({"WRITEBACK_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "WRITEBACK_KAFKA__SASL_MECHANISM": "PLAIN",
          "WRITEBACK_KAFKA__SASL_USERNAME": "u", "WRITEBACK_KAFKA__SASL_PASSWORD": "hunter2-inline"},
         "WRITEBACK_KAFKA__SASL_PASSWORD", "by reference only"),
        ({"WRITEBACK_REGISTRY__USERNAME": "u", "WRITEBACK_REGISTRY__PASSWORD": "hunter2-inline"},
         "WRITEBACK_REGISTRY__PASSWORD", "by reference only"),
        ({"WRITEBACK_SCHEMA_REGISTRY_URL": "https://u:hunter2-inline@registry.example.org"},
         "WRITEBACK_SCHEMA_REGISTRY_URL", "user info is refused"),
        ({"WRITEBACK_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}, "WRITEBACK_KAFKA", "needs sasl_mechanism"),
        ({"WRITEBACK_KAFKA__SASL_MECHANISM": "PLAIN"}, "WRITEBACK_KAFKA", "security_protocol is PLAINTEXT"),
        ({"WRITEBACK_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "WRITEBACK_KAFKA__SASL_MECHANISM": "GSSAPI"},
         "WRITEBACK_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512"),
        ({"WRITEBACK_KAFKA__SECURITY_PROTOCOL": "SSL", "WRITEBACK_KAFKA__SSL_CA_FILE": "/nonexistent/ca.pem"},
         "WRITEBACK_KAFKA__SSL_CA_FILE", "does not point to a file"),
    ],
)
def test_refused_settings_name_the_variable_and_never_echo_a_value(env, variables, named, reason):
    env(**variables)
    with pytest.raises(ConfigError) as refused:
        load_config()
    message = str(refused.value)
    assert named in message and reason in message
    assert "hunter2-inline" not in message


def test_a_password_reference_to_an_unset_variable_fails_when_a_client_is_built(env):
    env(
        WRITEBACK_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
        WRITEBACK_KAFKA__SASL_MECHANISM="SCRAM-SHA-512",
        WRITEBACK_KAFKA__SASL_USERNAME="u",
        WRITEBACK_KAFKA__SASL_PASSWORD__ENV="NOT_SET_ANYWHERE",
    )
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        load_config().kafka_config()
