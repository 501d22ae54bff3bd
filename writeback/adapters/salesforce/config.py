"""A Salesforce connection's `crm` settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from writeback.secrets import SecretRef


class Config(BaseModel):
    """Validated from the connection's `crm` table; the secret stays a reference until the
    adapter fetches a token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    login_url: str = Field(description="The org's My Domain URL; client-credentials needs it.")
    client_id: str = Field(min_length=1)
    client_secret: SecretRef
    api_version: str = Field("60.0", pattern=r"^\d{2,3}\.0$")
    timeout_s: float = Field(30.0, gt=0)
    suppress_email_opt_out: bool = Field(False, description="Seed 002: leave Email Opt Out alone.")

    @field_validator("login_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("login_url must be an http(s) URL")
        return value.rstrip("/")
