"""The `crm` settings of a netFORUM connection, validated with errors that name the field.

```toml
[accounts.connections.crm]
xweb_url = "https://members.example.org/xweb/secure/netFORUMXML.asmx"
username = "informz-xweb"
password = { env = "NETFORUM_XWEB_PASSWORD" }   # or { file = "/run/secrets/xweb" }
```

`xweb_url` is the endpoint; the WSDL is read from it (`?WSDL`). `wsdl_url` names a WSDL kept
elsewhere; with both, the WSDL comes from `wsdl_url` and calls go to `xweb_url`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from writeback.schedules import TimeZoneName
from writeback.secrets import SecretRef

__all__ = ["Config", "SecretRef"]


class Config(BaseModel):
    """One netFORUM site and the xWeb user the writebacks run as."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wsdl_url: str | None = Field(None, description="The xWeb WSDL, when it is not at xweb_url?WSDL.")
    xweb_url: str | None = Field(
        None,
        description="The xWeb endpoint, conventionally https://<site>/xweb/secure/netFORUMXML.asmx.",
        validate_default=True,
    )
    username: str = Field(min_length=1, max_length=256, description="The xWeb user.")
    password: SecretRef = Field(description='{env = "NAME"} or {file = "/path"}, never the password.')
    timeout_s: float = Field(30.0, gt=0, le=600, description="Longest wait for one xWeb call.")
    time_zone: TimeZoneName | None = Field(
        None,
        description="The site's zone: netFORUM dates carry no offset. Defaults to the account's zone.",
    )
    session_max_age_s: float = Field(
        15 * 60,
        gt=0,
        description="Authenticate again after this long, before xWeb's token timeout (20 minutes by "
        "default) would cost a TokenExpired fault.",
    )
    fault_budget_per_day: int = Field(
        20,
        ge=1,
        le=99,
        description="Faults this connection accepts in a UTC day before it stops calling xWeb; well "
        "below MethodsFaultLimitPerDay (100 by default), which locks the xWeb user.",
    )

    @field_validator("wsdl_url", "xweb_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{info.field_name} must be an http(s) URL")
        if parts.username is not None:
            raise ValueError(f"{info.field_name} must not carry user info; use username and password")
        return value.strip()

    @field_validator("xweb_url")
    @classmethod
    def _an_endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        # a wsdl_url that failed validation is absent from info.data and already reported
        if value is None and "wsdl_url" in info.data and info.data["wsdl_url"] is None:
            raise ValueError("give xweb_url (the xWeb endpoint) or wsdl_url")
        return value

    @field_validator("password", mode="before")
    @classmethod
    def _by_reference(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError('must be a reference, {env = "NAME"} or {file = "/path"}, never the password')
        return value

    @property
    def wsdl(self) -> str:
        """Where the service description is read from."""
        if self.wsdl_url is not None:
            return self.wsdl_url
        assert self.xweb_url is not None
        return self.xweb_url + "?WSDL"

