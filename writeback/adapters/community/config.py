"""The `crm` settings of a community connection (seed 003), validated with errors that name the field.

```toml
[accounts.connections.crm]
api_url = "https://api.connectedcommunity.org/api/v2.0"
iam_key = { env = "COMMUNITY_IAM_KEY" }          # or { file = "/run/secrets/iam-key" }
password = { env = "COMMUNITY_PASSWORD" }
active = true
```

003's Integration Settings: "Check the Active box" and paste the IAMKey and Password Support
sent. Both are credentials, so both are references. An inactive connection keeps its target
groups but is never synced (a sync says so instead of calling the community).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from writeback.secrets import SecretRef


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_url: str = Field(description="The community REST API's base, ending in /api/v2.0.")
    iam_key: SecretRef = Field(description='The HLIAMKey: {env = "NAME"} or {file = "/path"}.')
    password: SecretRef = Field(description='The HLPassword: {env = "NAME"} or {file = "/path"}.')
    active: bool = Field(True, description="003's Active box: unchecked, nothing is synced.")
    timeout_s: float = Field(30.0, gt=0, le=600, description="Longest wait for one API call.")
    page_size: int = Field(50, ge=1, le=500, description="Records per StartRecord/EndRecord page.")

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("api_url must be an http(s) URL")
        if parts.username is not None:
            raise ValueError("api_url must not carry user info; use iam_key and password")
        return value.strip().rstrip("/")

    @field_validator("iam_key", "password", mode="before")
    @classmethod
    def _by_reference(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError('must be a reference, {env = "NAME"} or {file = "/path"}, never the value')
        return value
