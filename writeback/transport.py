"""How the service's clients reach Kafka and the schema registry: TLS and SASL.

Users run the service beside an existing cluster, usually behind SASL_SSL, with credentials in
Kubernetes Secrets. So passwords are references (`SecretRef`: an environment variable's name or
a mounted file), resolved each time a client is built and never kept in the settings; a value
given inline is refused, naming the variable to set instead.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    field_validator,
    model_validator,
)

from writeback.secrets import SecretRef


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    PLAIN = "PLAIN"


def _reference_only(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "a secret is given by reference only, never inline: append __ENV to this variable's "
            "name to name an environment variable that holds it, or __FILE to name a file"
        )
    return value


class KafkaSecurity(BaseModel):
    """`WRITEBACK_KAFKA__*`: applied to every consumer, producer and admin client."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    security_protocol: SecurityProtocol = Field(SecurityProtocol.PLAINTEXT, description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: SaslMechanism | None = Field(None, description="SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN; required with SASL_*")
    sasl_username: str | SecretRef | None = Field(None, description="The SASL user, as text or as a reference (`__ENV`, `__FILE`)")
    sasl_password: SecretRef | None = Field(None, description="Reference only: `__ENV=VARIABLE` or `__FILE=/path`")
    ssl_ca_file: FilePath | None = Field(None, description="PEM CA bundle that signed the brokers' certificates (default: the system's)")
    ssl_cert_file: FilePath | None = Field(None, description="PEM client certificate, for brokers that require mutual TLS")
    ssl_key_file: FilePath | None = Field(None, description="PEM private key of the client certificate")
    ssl_key_password: SecretRef | None = Field(None, description="Reference to the key's passphrase, if it is encrypted")
    ssl_check_hostname: bool = Field(True, description="Verify that a broker's certificate names the host connected to")

    _refs = field_validator("sasl_password", "ssl_key_password", mode="before")(_reference_only)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        sasl = self.security_protocol in (SecurityProtocol.SASL_SSL, SecurityProtocol.SASL_PLAINTEXT)
        if sasl and (self.sasl_mechanism is None or self.sasl_username is None or self.sasl_password is None):
            raise ValueError(f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password")
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError(f"SASL settings given but security_protocol is {self.security_protocol}")
        _pair(self.ssl_cert_file, self.ssl_key_file)
        return self

    def client_config(self) -> dict[str, str]:
        """librdkafka properties; secrets are resolved here, at each client's construction."""
        conf: dict[str, str] = {}
        if self.security_protocol is not SecurityProtocol.PLAINTEXT:
            conf["security.protocol"] = self.security_protocol.value
        if self.sasl_mechanism is not None and self.sasl_username is not None and self.sasl_password is not None:
            username = self.sasl_username
            conf["sasl.mechanism"] = self.sasl_mechanism.value
            conf["sasl.username"] = username if isinstance(username, str) else username.resolve().get_secret_value()
            conf["sasl.password"] = self.sasl_password.resolve().get_secret_value()
        if self.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
            conf["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_check_hostname else "none"
            if self.ssl_ca_file:
                conf["ssl.ca.location"] = str(self.ssl_ca_file)
            if self.ssl_cert_file and self.ssl_key_file:
                conf["ssl.certificate.location"] = str(self.ssl_cert_file)
                conf["ssl.key.location"] = str(self.ssl_key_file)
            if self.ssl_key_password:
                conf["ssl.key.password"] = self.ssl_key_password.resolve().get_secret_value()
        return conf


class RegistryAccess(BaseModel):
    """`WRITEBACK_REGISTRY__*`: basic auth and TLS for the schema registry client."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str | SecretRef | None = Field(None, description="Basic auth user (an API key for hosted registries)")
    password: SecretRef | None = Field(None, description="Reference only: `__ENV=VARIABLE` or `__FILE=/path`")
    ssl_ca_file: FilePath | None = Field(None, description="PEM CA bundle for an https registry URL (default: the system's)")
    ssl_cert_file: FilePath | None = Field(None, description="PEM client certificate, for a registry that requires mutual TLS")
    ssl_key_file: FilePath | None = Field(None, description="PEM private key of the client certificate")

    _refs = field_validator("password", mode="before")(_reference_only)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        _pair(self.ssl_cert_file, self.ssl_key_file)
        return self

    def client_config(self) -> dict[str, str]:
        conf: dict[str, str] = {}
        if self.username is not None and self.password is not None:
            username = self.username if isinstance(self.username, str) else self.username.resolve().get_secret_value()
            conf["basic.auth.user.info"] = f"{username}:{self.password.resolve().get_secret_value()}"
        if self.ssl_ca_file:
            conf["ssl.ca.location"] = str(self.ssl_ca_file)
        if self.ssl_cert_file and self.ssl_key_file:
            conf["ssl.certificate.location"] = str(self.ssl_cert_file)
            conf["ssl.key.location"] = str(self.ssl_key_file)
        return conf


def _pair(cert: object, key: object) -> None:
    if (cert is None) != (key is None):
        raise ValueError("ssl_cert_file and ssl_key_file go together (mutual TLS)")
